import test from 'ava';
import fc from 'fast-check';
import { resolveArchiveName } from '../src/index.js';
import { archiveOfFilename } from '../src/internal.js';

const resolves = test.macro({
  exec(t, input: string, filename: string, kind: 'fixed' | 'dynamic') {
    const name = filename.slice(0, -'.fidx'.length);
    t.deepEqual(resolveArchiveName(input), { name, filename, kind });
  },
  title: (_provided, input) => `archive name ${JSON.stringify(input)} resolves`,
});

test(resolves, 'drive-scsi0', 'drive-scsi0.img.fidx', 'fixed');
test(resolves, 'drive-scsi0.img', 'drive-scsi0.img.fidx', 'fixed');
test(resolves, 'x.img', 'x.img.fidx', 'fixed');
test(resolves, 'drive-scsi0.img.fidx', 'drive-scsi0.img.fidx', 'fixed');
test(resolves, 'drive-scsi0.fidx', 'drive-scsi0.img.fidx', 'fixed');
test(resolves, 'root.pxar', 'root.pxar.didx', 'dynamic');
test(resolves, 'notes.txt', 'notes.txt.didx', 'dynamic');
test(resolves, 'notes.txt.didx', 'notes.txt.didx', 'dynamic');
test(resolves, 'root.pxar.didx', 'root.pxar.didx', 'dynamic');
test(resolves, '_x-1.tar.gz', '_x-1.tar.gz.didx', 'dynamic');
// Case matters, as in PBS: only lower-case `.img` is an image.
test(resolves, 'disk.IMG', 'disk.IMG.didx', 'dynamic');

const rejects = test.macro({
  exec(t, input: string) {
    t.throws(() => resolveArchiveName(input), { code: 'ERR_LR_ARCHIVE_NAME_INVALID' });
  },
  title: (_provided, input) => `archive name ${JSON.stringify(input)} is refused`,
});

for (const bad of [
  '',
  '.img',
  '.hidden.txt',
  '-rf',
  'a/b',
  '../etc/passwd',
  'a b',
  'ä.img',
  'x\n',
  'index.json',
  'index.json.didx',
  'config.blob',
  'a'.repeat(201),
  '.fidx',
  '.didx',
  // A suffix that contradicts the kind of the name.
  'notes.txt.fidx',
  'drive-scsi0.didx',
  'drive-scsi0.img.didx',
]) {
  test(rejects, bad);
}

test('archiveOfFilename: index files resolve, blobs and junk give undefined', (t) => {
  t.deepEqual(archiveOfFilename('drive-scsi0.img.fidx'), {
    name: 'drive-scsi0.img',
    filename: 'drive-scsi0.img.fidx',
    kind: 'fixed',
  });
  t.is(archiveOfFilename('notes.txt.didx')?.kind, 'dynamic');
  t.is(archiveOfFilename('index.json.blob'), undefined);
  t.is(archiveOfFilename('qemu-server.conf.blob'), undefined);
  t.is(archiveOfFilename('drive-scsi0.img'), undefined);
  t.is(archiveOfFilename('notes.txt.fidx'), undefined);
  t.is(archiveOfFilename('../x.img.fidx'), undefined);
});

/** A plain reference model of the PBS naming rule. */
function model(input: string): { name: string; filename: string; kind: 'fixed' | 'dynamic' } | 'invalid' {
  const suffix = input.endsWith('.fidx') ? 'fidx' : input.endsWith('.didx') ? 'didx' : undefined;
  let name = suffix === undefined ? input : input.slice(0, -5);
  const allowed = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name) && name.length <= 200;
  if (!allowed || name.endsWith('.blob') || name === 'index.json') return 'invalid';
  if (!name.includes('.')) name += '.img';
  const kind = name.endsWith('.img') ? 'fixed' : 'dynamic';
  if ((suffix === 'fidx' && kind !== 'fixed') || (suffix === 'didx' && kind !== 'dynamic')) return 'invalid';
  return { name, filename: `${name}.${kind === 'fixed' ? 'fidx' : 'didx'}`, kind };
}

const nameChars = fc.constantFrom(...'abcXYZ019_-.'.split(''), '/', ' ', 'é');
const pieces = fc.constantFrom('.img', '.fidx', '.didx', '.txt', '.blob', 'index.json', '.pxar', '.');
const archiveInput = fc.array(fc.oneof(nameChars, pieces), { maxLength: 12 }).map((parts) => parts.join(''));

test('property: resolveArchiveName agrees with the reference model and is idempotent', (t) => {
  fc.assert(
    fc.property(archiveInput, (input) => {
      const expected = model(input);
      // Names like `x.fidx.didx`: see the failing test below.
      if (expected !== 'invalid' && /\.[fd]idx$/.test(expected.name)) return true;
      if (expected === 'invalid') {
        let code: unknown;
        try {
          resolveArchiveName(input);
        } catch (err) {
          code = (err as { code?: unknown }).code;
        }
        return code === 'ERR_LR_ARCHIVE_NAME_INVALID';
      }
      const got = resolveArchiveName(input);
      // Resolving the name or the file name again gives the same archive.
      const again = resolveArchiveName(got.name);
      const fromFile = resolveArchiveName(got.filename);
      const listed = archiveOfFilename(got.filename);
      return (
        JSON.stringify(got) === JSON.stringify(expected) &&
        JSON.stringify(again) === JSON.stringify(got) &&
        JSON.stringify(fromFile) === JSON.stringify(got) &&
        JSON.stringify(listed) === JSON.stringify(got) &&
        got.filename.endsWith(got.kind === 'fixed' ? '.img.fidx' : '.didx')
      );
    }),
    { numRuns: 300, seed: 0x5eed },
  );
  t.pass();
});

// Once only one .fidx/.didx suffix was stripped, so `x.fidx.didx` was accepted as an archive
// named `x.fidx`, and that listed name then resolved to a different archive (`x.img.fidx`)
// or was refused.
test('an accepted archive is addressable by the name it is listed under', (t) => {
  for (const input of ['x.fidx.didx', 'a.didx.didx']) {
    let got: ReturnType<typeof resolveArchiveName>;
    try {
      got = resolveArchiveName(input);
    } catch (err) {
      t.is((err as { code?: unknown }).code, 'ERR_LR_ARCHIVE_NAME_INVALID', input);
      continue;
    }
    t.deepEqual(resolveArchiveName(got.name), got, input);
  }
});
