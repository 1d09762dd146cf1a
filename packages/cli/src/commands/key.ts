import { open } from 'node:fs/promises';
import { CryptConfig, encodeKeyFile, LiverestoreError } from '@liverestore/format';
import { COMMON_OPTIONS, defineCommand, loadKeyFile, printJson, required } from '../command.js';
import { UsageError } from '../errors.js';

export const keyCommand = defineCommand({
  name: 'key',
  summary: 'create or inspect an encryption key file (PBS format)',
  help: `Usage: liverestore key create --keyfile FILE [--json]
       liverestore key show --keyfile FILE [--json]

create  writes a new random AES-256 key to FILE (mode 0600) in the Proxmox Backup
        Server key file format without a passphrase (kdf: null). It never overwrites
        an existing file. Keep it safe: without it an encrypted backup cannot be read.
show    prints the key's fingerprint (the one recorded in encrypted manifests).

Options:
  --keyfile FILE   the key file (required)
  --json           print JSON
  -h, --help       show this help`,
  options: { ...COMMON_OPTIONS, keyfile: { type: 'string' } },
  actions: ['create', 'show'],
  async run({ values, positionals }, io) {
    const action = positionals[0];
    const path = required(values.keyfile, '--keyfile', 'key');
    if (action === 'create') {
      const crypt = CryptConfig.generate();
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(path, 'wx', 0o600);
      } catch (cause) {
        const code = (cause as { code?: string }).code;
        throw new LiverestoreError(
          code === 'EEXIST' ? 'ERR_LR_KEYFILE_EXISTS' : 'ERR_LR_KEYFILE_UNREADABLE',
          code === 'EEXIST'
            ? `${path} exists already; not overwriting a key`
            : `cannot create ${path} (${code ?? 'error'})`,
          { cause },
        );
      }
      try {
        await handle.writeFile(`${encodeKeyFile(crypt)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (values.json === true) printJson(io, { keyfile: path, fingerprint: crypt.fingerprint() });
      else io.stdout.write(`created ${path}\nfingerprint ${crypt.fingerprint()}\n`);
      return 0;
    }
    if (action === 'show') {
      const crypt = (await loadKeyFile(path))!;
      if (values.json === true) printJson(io, { keyfile: path, fingerprint: crypt.fingerprint() });
      else io.stdout.write(`fingerprint ${crypt.fingerprint()}\n`);
      return 0;
    }
    throw new UsageError(
      `key: expected "create" or "show", got ${action === undefined ? 'nothing' : `"${action}"`}`,
    );
  },
});
