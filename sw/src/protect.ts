/**
 * Members-only paths (`protect` in `/_grove/root`): the worker never answers
 * them from its cache, so a page a member's session fetched is not shown to
 * whoever uses the browser next. The proxy's rule (`Access::is_protected`),
 * checked by spec/vectors/protect.json: a pattern matches the decoded URL
 * path whole, `*` matches any run of characters, ASCII letters match either case.
 */
export function isProtected(patterns: readonly string[] | undefined, urlPath: string): boolean {
  const text = fold(urlPath);
  return !!patterns?.some((pattern) => {
    // The first piece is a prefix, the last a suffix, the rest appear in
    // order between them (leftmost first): linear, never backtracking.
    const pieces = fold(pattern).split('*');
    const last = pieces.pop() as string;
    if (!pieces.length) return text === last;
    let at = 0;
    for (const [i, piece] of pieces.entries()) {
      const found = i ? text.indexOf(piece, at) : text.startsWith(piece) ? 0 : -1;
      if (found < 0) return false;
      at = found + piece.length;
    }
    return text.length - last.length >= at && text.endsWith(last);
  });
}

const fold = (text: string): string => text.replace(/[A-Z]/g, (letter) => letter.toLowerCase());
