/** Where the SDK says what it does: a function of level and message (default: stderr). */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type Logger = (level: LogLevel, message: string) => void;

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Writes lines at `level` (default STEPLINE_LOG_LEVEL, else "info") and above to stderr. */
export function stderrLogger(level?: LogLevel): Logger {
  const env = process.env["STEPLINE_LOG_LEVEL"];
  const min = ORDER[level ?? (env !== undefined && env in ORDER ? (env as LogLevel) : "info")];
  return (lvl, message) => {
    if (ORDER[lvl] >= min) process.stderr.write(`${new Date().toISOString()} stepline ${lvl} ${message}\n`);
  };
}
