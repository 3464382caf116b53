// The one-line usage printed with command-line errors (kept apart from the full help,
// which pulls in the flag table, so every command can print it cheaply).
export const USAGE_LINE = "usage: ucr <agent|run|exec|attach|ps|kill|rm|pull|load|images|prune|version|help> [flags]  (ucr help for more)";
