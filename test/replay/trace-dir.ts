/**
 * The recorded trace, beside the repository clone: `../shared/traces/linux-6.1-smp4` from the
 * repository root (CI checks shared/ out next to the clone).
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const REPO_ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
export const TRACE_DIR = join(REPO_ROOT, '..', 'shared', 'traces', 'linux-6.1-smp4');
