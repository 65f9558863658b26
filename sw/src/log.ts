/** A handler that reports a failure the worker recovers from (it still answers). */
export function warn(what: string): (error: unknown) => void {
  return (error) => console.warn(`grove: ${what}`, error);
}
