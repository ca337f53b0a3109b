// The bootstrap admin key: INVARIANCE_ADMIN_KEY if set; otherwise the first start generates
// one, writes it to DATA_DIR/admin.key (mode 0600) and says so once. Later starts reuse it.
//
// Revocation wins over configuration: a bootstrap key revoked through the API is never brought
// back by a restart. A revoked admin.key is replaced by a new generated key (shown once again),
// so the operator is not locked out; a revoked INVARIANCE_ADMIN_KEY grants nothing until it is
// given a new value. A new INVARIANCE_ADMIN_KEY value retires the earlier ones (rotation).
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ApiKeyRepository, generateKey } from './apiKeys.js';

/** Key names, so that the list of keys tells where each bootstrap key came from. */
export const ENV_KEY_NAME = 'bootstrap-admin (INVARIANCE_ADMIN_KEY)';
export const FILE_KEY_NAME = 'bootstrap-admin (admin.key)';

export interface AdminKeyResult {
  key: string;
  /** A new key was written to `file` (first start, or the previous one had been revoked). */
  generated: boolean;
  /** The key in admin.key had been revoked and was replaced. */
  replacedRevoked: boolean;
  /** INVARIANCE_ADMIN_KEY is revoked: it grants nothing. */
  envKeyRevoked: boolean;
  /** Earlier INVARIANCE_ADMIN_KEY values revoked by this start. */
  retired: number;
  file: string | null;
}

async function writeKeyFile(file: string, key: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${key}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}

export async function ensureAdminKey(
  keys: ApiKeyRepository,
  opts: { dataDir: string; fromEnv: string | null },
): Promise<AdminKeyResult> {
  const none = { generated: false, replacedRevoked: false, envKeyRevoked: false, retired: 0 };
  if (opts.fromEnv) {
    const state = await keys.ensureBootstrap(ENV_KEY_NAME, opts.fromEnv, ['admin']);
    const retired = await keys.revokeOthersNamed(ENV_KEY_NAME, opts.fromEnv);
    return { ...none, key: opts.fromEnv, envKeyRevoked: state === 'revoked', retired, file: null };
  }
  const file = path.join(opts.dataDir, 'admin.key');
  const hadFile = existsSync(file);
  if (hadFile) {
    const key = (await readFile(file, 'utf8')).trim();
    if ((await keys.ensureBootstrap(FILE_KEY_NAME, key, ['admin'])) === 'active') {
      return { ...none, key, file };
    }
  }
  const key = generateKey();
  await mkdir(opts.dataDir, { recursive: true });
  await writeKeyFile(file, key);
  await keys.ensureBootstrap(FILE_KEY_NAME, key, ['admin']);
  // Here a file that was there held a revoked key.
  return { ...none, key, generated: true, replacedRevoked: hadFile, file };
}
