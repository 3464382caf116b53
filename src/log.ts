// Agent logging to stderr, one line per event, with Mesos' three severities
// (--logging_level=INFO|WARNING|ERROR): a line below the level is not written.

export const LEVELS = ["INFO", "WARNING", "ERROR"] as const;
export type Level = (typeof LEVELS)[number];

let threshold = 0;

export function setLevel(level: Level): void {
  threshold = LEVELS.indexOf(level);
}

function write(level: Level, message: string, always = false): void {
  if (!always && LEVELS.indexOf(level) < threshold) return;
  process.stderr.write(`${level[0]}${new Date().toISOString()} ${process.pid}] ${message}\n`);
}

export const log = {
  info: (message: string) => write("INFO", message),
  warn: (message: string) => write("WARNING", message),
  error: (message: string) => write("ERROR", message),
  /** Written whatever the level: the few lines an operator must always see (where we listen). */
  always: (message: string) => write("INFO", message, true),
};
