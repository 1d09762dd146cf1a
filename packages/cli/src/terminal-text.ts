/**
 * Text that came from outside (a server's error message, a file name in a store) is
 * printed on one line with every control character escaped: a malicious server must not
 * be able to move the cursor, recolour or clear the terminal (ESC sequences), or forge
 * extra output lines (CR/LF) under the one-line error contract of docs/errors.md.
 */

// C0 controls, DEL, C1 controls (U+0080–U+009F, e.g. CSI U+009B), and the Unicode line
// and paragraph separators, which some terminals and log viewers break lines on.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function escapeControl(char: string): string {
  if (char === '\n') return '\\n';
  if (char === '\r') return '\\r';
  if (char === '\t') return '\\t';
  const code = char.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `text` as one printable line: control characters become `\n`, `\x1b`, `\u2028` and so on. */
export function printableLine(text: string): string {
  return text.replace(CONTROL, escapeControl);
}
