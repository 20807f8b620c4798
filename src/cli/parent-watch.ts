/** How often the parent is checked; a stop request is noticed within this. */
const CHECK_MS = 250;

/**
 * When npm started this process, says so on stderr and calls `onOrphaned` once its parent is gone.
 *
 * `npx omnipush serve` (and an npm script without `exec`) runs us under `sh -c`, and npm passes
 * the SIGTERM or SIGINT it gets to that shell only. The shell dies of SIGTERM and leaves us
 * running, re-parented: so under npm, losing the parent is the stop request we never received.
 * (A SIGINT the shell keeps to itself until we exit; nothing here can see that one.)
 * Outside npm a changed parent means nothing (`nohup omnipush serve &` from a script that
 * exits), so nothing is watched there.
 */
export function stopWithNpmParent(onOrphaned: () => void, env: NodeJS.ProcessEnv = process.env): void {
  if (!env.npm_lifecycle_event) return;
  const parent = process.ppid;
  // already re-parented to init: there is nothing to outlive
  if (parent <= 1) return;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.stderr.write('omnipush: the npm process that started the server is gone (npm passes signals only to its shell); stopping\n');
    onOrphaned();
  }, CHECK_MS);
  timer.unref();
}
