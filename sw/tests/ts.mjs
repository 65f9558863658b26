// Imported first by every test file: from then on, `await import('../src/x.ts')`
// works under plain `node --test` (static imports are linked before this runs,
// so the sources are imported dynamically).
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
