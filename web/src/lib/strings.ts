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
  // Single sign-on: provider buttons on the sign-in page and the account's linked providers.
  sso: {
    signInWith: (name: string) => `Sign in with ${name}`,
    or: 'or',
    errors: {
      'sso-account-unknown': 'No Celforge account is linked to that sign-in. Sign in with your password and link it from your account page, or ask an administrator.',
      'sso-link-required': 'An account with that e-mail already exists. Sign in with its password, then link the provider from your account page.',
      'sso-email-domain': 'Accounts of that e-mail domain cannot sign in here.',
      'sso-no-role': 'Your account at the provider is not in a group allowed to use Celforge.',
      'sso-account-disabled': 'This account is disabled.',
      'sso-linked-elsewhere': 'That provider account is already linked to another Celforge account.',
      'sso-provider-unavailable': "The sign-in provider can't be reached right now. Try again later.",
    } as Record<string, string>,
    failed: "The sign-in didn't complete. Start again.",
    sectionTitle: 'Sign-in providers',
    sectionLead: 'Sign in with your organisation account instead of a password.',
    none: 'No provider is linked to this account.',
    linkedAs: (name: string, email: string | null) => (email ? `${name} — ${email}` : name),
    since: (when: string) => `Linked ${when}`,
    link: (name: string) => `Link ${name}`,
    unlink: (name: string) => `Unlink ${name}`,
    linked: (name: string) => `${name} is now linked to your account.`,
    unlinked: (name: string) => `${name} was unlinked.`,
  },
  account: {
    title: 'Account',
  },
  notFound: {
    title: 'Not found',
    lead: "There's nothing at this address.",
    home: 'Go to the studio',
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
