/** The service worker's global scope, typed as such (lib.webworker types `self` as any worker). */
export const sw = self as unknown as ServiceWorkerGlobalScope;
