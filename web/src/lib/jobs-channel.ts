/** Tells the studio's other tabs that the job list changed (a job made, canceled or published here). */
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('celforge-jobs') : null;
const local = new Set<() => void>();

export function announceJobs(): void {
  channel?.postMessage('changed');
  for (const listener of local) listener();
}

export function onJobsChanged(listener: () => void): () => void {
  const onMessage = () => listener();
  channel?.addEventListener('message', onMessage);
  local.add(listener);
  return () => {
    channel?.removeEventListener('message', onMessage);
    local.delete(listener);
  };
}
