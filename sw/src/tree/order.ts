/**
 * Tree keys sort by their UTF-8 bytes (Rust's `str` order, used by the
 * encoder). That is code point order, which differs from JavaScript's UTF-16
 * order only where a surrogate (a code point above U+FFFF) meets a character
 * in U+E000..U+FFFF; this comparison moves surrogates above that range.
 */
export function compareKeys(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}
