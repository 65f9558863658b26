/** Byte helpers shared by the tree decoder, path parsing, HTML injection and hash checks. */

/**
 * Strict UTF-8, as Rust's `str::from_utf8`: invalid bytes are an error, and a
 * leading byte-order mark is kept as a character (Rust never strips one).
 */
export const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export const utf8 = new TextEncoder();

/** Lowercase hex, the form content hashes take in URLs and object keys. */
export function toHex(bytes: Uint8Array): string {
  let hex = '';
  for (const byte of bytes) hex += (byte < 16 ? '0' : '') + byte.toString(16);
  return hex;
}

/** SHA-256 by WebCrypto, in hex: the name of every tree node and blob. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}
