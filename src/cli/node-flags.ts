/**
 * The Node flags the launchers start the service with (`npm run up`, `npm run pme`,
 * docker/Dockerfile): a 32 MB young generation, so less of what is in flight is promoted, and
 * 128 MB of old generation before V8 starts full collections (docs/serving.md, "Garbage collection
 * and the Node flags").
 * Node refuses the second in NODE_OPTIONS, so they are command-line flags.
 */
export const SERVICE_NODE_FLAGS = ['--max-semi-space-size=32', '--initial-old-space-size=128'] as const;

/**
 * A line for the log when Node runs without the flags (a flag given with another value counts as
 * set: that is a choice), or null.
 */
export function nodeFlagsHint(execArgv: readonly string[] = process.execArgv): string | null {
  const missing = SERVICE_NODE_FLAGS.filter((flag) => {
    const name = flag.slice(0, flag.indexOf('='));
    return !execArgv.some((arg) => arg === name || arg.startsWith(`${name}=`));
  });
  if (missing.length === 0) return null;
  return `pme: Node runs without ${missing.join(' ')}: expect longer garbage-collection pauses in request latency (start it as \`node ${SERVICE_NODE_FLAGS.join(' ')} dist/src/cli/main.js ...\`, as npm run up does)`;
}
