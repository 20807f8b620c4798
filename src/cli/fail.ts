/** Ends the command with one line on stderr and exit code 1. */
export function fail(message: string): never {
  process.stderr.write(`omnipush: ${message}\n`);
  process.exit(1);
}
