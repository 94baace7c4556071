/**
 * Every word the studio shows, in one place: another language is another object of this shape.
 * Functions take the values a sentence needs, so word order can differ between languages.
 */
export const strings = {
  brand: 'Celforge',
  studio: 'Celforge Studio',
  nav: {
    main: 'Main',
    create: 'Create',
    jobs: 'My jobs',
    gallery: 'Gallery',
    signIn: 'Sign in',
    signOut: 'Sign out',
    account: 'Account',
    signedInAs: (email: string) => `Signed in as ${email}`,
    signedInAsPrefix: 'Signed in as ',
    admin: 'Administrator',
    skip: 'Skip to content',
  },
  common: {
    loading: 'Loading…',
    retry: 'Try again',
    loadMore: 'Load more',
    end: "That's everything.",
    close: 'Close',
    offline: "Celforge can't be reached. Check your connection and try again.",
    unexpected: (requestId?: string) =>
      requestId ? `Something went wrong on our side. If it keeps happening, quote request ${requestId}.` : 'Something went wrong on our side. Try again in a moment.',
  },
  signIn: {
    title: 'Sign in',
    lead: 'Sign in to make images and videos and follow your jobs.',
    email: 'Email',
    password: 'Password',
    submit: 'Sign in',
    working: 'Signing in…',
    codeTitle: 'Two-factor authentication',
    codeLead: 'Enter the 6-digit code from your authenticator app. A recovery code works here too.',
    code: 'Authentication code',
    verify: 'Verify',
    back: 'Use another account',
    invalid: "That didn't work. Check your email and password and try again.",
    invalidCode: "That code didn't work. Wait for a fresh code, or use one of your recovery codes.",
    throttled: (seconds: number) => `Too many attempts. Try again in ${duration(seconds)}.`,
    ended: 'Your session has ended. Sign in again to continue.',
    signedOut: 'You have signed out.',
    galleryHint: 'Just looking?',
    galleryLink: 'Browse the public gallery',
  },
  create: {
    title: 'Create',
    prompt: 'Prompt',
    promptHint: 'Describe the picture: who, where, light, mood.',
    count: (n: number, max: number) => `${n} / ${max}`,
    tooLong: (max: number) => `Keep the prompt to ${max} characters.`,
    negative: 'Negative prompt',
    negativeHint: 'What to leave out (optional).',
    type: 'Type',
    image: 'Image',
    video: 'Video',
    size: 'Size',
    presets: { square: 'Square', portrait: 'Portrait', landscape: 'Landscape' } as Record<string, string>,
    seed: 'Seed',
    randomSeed: 'Random seed',
    seedHint: 'The same seed and settings give the same picture.',
    steps: 'Steps',
    stepsHint: 'More steps: finer detail, longer wait.',
    style: 'Style',
    styles: { none: 'No style', anime: 'Anime', cel: 'Cel shaded', watercolor: 'Watercolor', sketch: 'Sketch', film: 'Film still' } as Record<string, string>,
    generate: 'Generate',
    working: 'Sending…',
    queued: 'Queued.',
    openJob: 'Follow it',
    budget: 'Your limits',
    budgetUnits: (left: number | null, quota: number, seconds: number) =>
      left === null ? `Generation budget: ${quota} units every ${duration(seconds)}` : `Generation budget: ${left} of ${quota} units left this ${duration(seconds)}`,
    costs: (image: number, video: number) => `An image costs ${image}, a video ${video}.`,
    active: (used: number, limit: number) => `Running or waiting: ${used} of ${limit}`,
    today: (used: number, limit: number) => `Today (UTC): ${used} of ${limit} jobs`,
    rateLimited: (seconds: number) => `You've used this minute's generation budget. You can generate again in ${duration(seconds)}.`,
    activeQuota: (limit: number) => `You already have ${limit} jobs running or waiting, your limit. Wait for one to finish, or cancel one in My jobs.`,
    dailyQuota: (limit: number, seconds: number) => `You've made ${limit} jobs today, your daily limit. It resets at midnight UTC, in ${duration(seconds)}.`,
    reused: 'This is the job you already sent.',
    settingsApplied: 'Settings copied from your job, seed included.',
  },
  jobs: {
    title: 'My jobs',
    filterStatus: 'Status',
    filterType: 'Type',
    all: 'All',
    statuses: { queued: 'queued', running: 'running', succeeded: 'succeeded', failed: 'failed', canceled: 'canceled' } as Record<string, string>,
    types: { image: 'Image', video: 'Video' } as Record<string, string>,
    progress: 'Progress',
    cancel: 'Cancel',
    canceling: 'Canceling…',
    open: 'Open',
    emptyTitle: 'No jobs yet',
    emptyLead: 'Everything you generate appears here, newest first, and updates live.',
    emptyFiltered: 'No jobs match these filters.',
    emptyAction: 'Create your first image',
    created: (when: string) => `Created ${when}`,
  },
  viewer: {
    notFoundTitle: 'Not found',
    notFoundLead: "This job doesn't exist, or it isn't yours.",
    back: 'Back to My jobs',
    zoomIn: 'Zoom in',
    zoomOut: 'Fit to screen',
    download: 'Download',
    reuse: 'Use these settings',
    publish: 'Publish',
    publishTo: 'Publish to',
    public: 'Public',
    members: 'Members',
    publicHint: 'Anyone, signed in or not',
    membersHint: 'Only people signed in to this studio',
    unpublish: 'Unpublish',
    publishedTo: (where: string) => `Published to ${where}.`,
    notPublished: 'Only you can see this.',
    details: 'Details',
    negative: 'Negative prompt',
    size: 'Size',
    seed: 'Seed',
    steps: 'Steps',
    frames: 'Frames',
    fps: 'Frames per second',
    style: 'Style',
    type: 'Type',
    created: 'Created',
    finished: 'Finished',
    waiting: 'Waiting for a renderer…',
    rendering: (p: number) => `Rendering: ${p}%`,
    failed: 'This job failed.',
    canceled: 'This job was canceled.',
    resultAlt: (prompt: string) => `Result for: ${prompt}`,
  },
  gallery: {
    title: 'Gallery',
    leadPublic: 'Works people here chose to share with everyone.',
    leadMembers: 'Works shared with everyone, and with members of this studio.',
    emptyTitle: 'Nothing shared yet',
    emptyLead: 'When someone publishes a work, it appears here.',
    membersBadge: 'Members',
    by: 'Prompt',
  },
  notFound: {
    title: 'Not found',
    lead: "There's nothing at this address.",
    home: 'Go to the studio',
  },
  // Passkeys: sign-in, the account page's Passkeys section, the account page itself
  passkeys: {
    signIn: 'Sign in with a passkey',
    or: 'or',
    signingIn: 'Waiting for your passkey…',
    refused: "That passkey wasn't accepted. Try again, or sign in with your password.",
    unavailable: "This browser can't use passkeys here.",
    confirmTitle: 'Confirm with your passkey',
    confirmLead: 'Your password was right. Now confirm with the passkey you added to this account.',
    confirm: 'Use my passkey',
    useInstead: 'Use a passkey instead',
    accountTitle: 'Account',
    title: 'Passkeys',
    lead: 'A passkey signs you in with your fingerprint, face or device PIN instead of a password, and it cannot be phished. It also confirms sign-ins after your password and administrative work.',
    empty: "You haven't added a passkey yet.",
    listLabel: 'Your passkeys',
    added: (when: string) => `Added ${when}`,
    lastUsed: (when: string) => `Last used ${when}`,
    neverUsed: 'Not used yet',
    synced: 'Synced',
    addTitle: 'Add a passkey',
    addLead: 'Enter your password, then follow your browser. You can name the passkey to tell it apart later.',
    name: 'Name (optional)',
    namePlaceholder: 'e.g. Work laptop',
    password: 'Current password',
    add: 'Add passkey',
    adding: 'Follow your browser…',
    addedNotice: (name: string) => `Passkey "${name}" added.`,
    rename: 'Rename',
    renameLabel: (name: string) => `New name for ${name}`,
    renameAction: (name: string) => `Rename ${name}`,
    save: 'Save',
    cancel: 'Cancel',
    renamedNotice: (name: string) => `Renamed to "${name}".`,
    remove: 'Remove',
    removeAction: (name: string) => `Remove ${name}`,
    removeConfirm: (name: string) => `Remove the passkey "${name}"? You can't sign in with it afterwards.`,
    removeYes: 'Remove passkey',
    removedNotice: (name: string) => `Passkey "${name}" removed.`,
    wrongPassword: "That password isn't right.",
  },
};

/** "45 seconds", "3 minutes", "2 h 5 min". */
export function duration(seconds: number): string {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return s === 1 ? '1 second' : `${s} seconds`;
  if (s < 3600) {
    const m = Math.ceil(s / 60);
    return m === 1 ? 'minute' : `${m} minutes`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.ceil((s % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

/** "2 minutes ago", "yesterday". */
export function ago(iso: string, now = Date.now()): string {
  const seconds = (Date.parse(iso) - now) / 1000;
  const steps: [Intl.RelativeTimeFormatUnit, number][] = [
    ['second', 60],
    ['minute', 60],
    ['hour', 24],
    ['day', 30],
    ['month', 12],
  ];
  let value = seconds;
  for (const [unit, size] of steps) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return relative.format(Math.round(value), 'year');
}
