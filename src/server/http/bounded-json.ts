/**
 * Bounds on a JSON body before it is parsed: how deep it nests and how long
 * its strings are. The body limit of each route (Fastify's bodyLimit) bounds
 * the bytes; these bound what a small body can still make the server do
 * (a 64 KiB body of `[` nests 65,536 deep, which recursive code downstream
 * cannot walk). One pass over the text, refusing before any object exists.
 */

/** What a JSON text may hold. */
export interface JsonBounds {
  readonly maxDepth: number;
  readonly maxStringChars: number;
}

/** Why a JSON text is refused: too deep (400) or a string too long (413), with a one-line message. */
export type JsonBoundsViolation = { readonly kind: 'too-deep'; readonly message: string } | { readonly kind: 'string-too-long'; readonly message: string };

// Quotes and brackets are the only characters that change depth or open a string.
const STRUCTURAL = /["[\]{}]/g;

/**
 * The first bound the text breaks, or undefined. Not a validator: malformed
 * JSON is left to JSON.parse, which says where it is wrong. Strings are
 * skipped with indexOf, so a manifest (mostly strings) costs a few ms per MB.
 */
export function jsonBoundsViolation(text: string, bounds: JsonBounds): JsonBoundsViolation | undefined {
  let depth = 0;
  STRUCTURAL.lastIndex = 0;
  for (let match = STRUCTURAL.exec(text); match !== null; match = STRUCTURAL.exec(text)) {
    const at = match.index;
    const char = text.charCodeAt(at);
    if (char === 0x22) {
      const end = stringEnd(text, at + 1);
      if (end - at - 1 > bounds.maxStringChars) {
        const chars = decodedLength(text, at + 1, end);
        if (chars > bounds.maxStringChars) {
          return { kind: 'string-too-long', message: `a string in the request body is ${chars} characters long; this route takes at most ${bounds.maxStringChars}` };
        }
      }
      STRUCTURAL.lastIndex = end + 1;
    } else if (char === 0x5b || char === 0x7b) {
      depth++;
      if (depth > bounds.maxDepth) return { kind: 'too-deep', message: `the request body nests deeper than ${bounds.maxDepth} levels of arrays and objects, the most this server takes` };
    } else {
      depth--;
    }
  }
  return undefined;
}

/** The index of the quote that closes the string whose first character is at `from` (the text's length when none does). */
function stringEnd(text: string, from: number): number {
  let at = text.indexOf('"', from);
  while (at !== -1) {
    let backslashes = 0;
    while (text.charCodeAt(at - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return text.length;
}

/** The characters a JSON string's raw text between `from` and `to` decodes to (an escape is one). */
function decodedLength(text: string, from: number, to: number): number {
  let chars = 0;
  for (let at = from; at < to; chars++) {
    if (text.charCodeAt(at) !== 0x5c) at++;
    else at += text.charCodeAt(at + 1) === 0x75 ? 6 : 2;
  }
  return chars;
}
