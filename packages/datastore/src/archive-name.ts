import { DatastoreError } from './errors.js';

/** How an archive is stored: a fixed index for disk images, a dynamic index for anything else. */
export interface ArchiveName {
  /** The archive name as users see it: `drive-scsi0.img`, `notes.txt`. */
  readonly name: string;
  /** The file in the snapshot directory: `drive-scsi0.img.fidx`, `notes.txt.didx`. */
  readonly filename: string;
  readonly kind: 'fixed' | 'dynamic';
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/**
 * True for a plain file name a snapshot directory may hold (`A-Za-z0-9._-`, not starting
 * with a dot or dash): a manifest entry like `../../../../x.img.fidx` is not one.
 */
export function isSnapshotFileName(filename: string): boolean {
  return NAME.test(filename);
}

/**
 * Resolves an archive name the PBS way: `NAME.img` is a fixed-index image (`NAME.img.fidx`),
 * another extension is a dynamic-index archive (`NAME.ext.didx`), no extension means
 * `NAME.img`. The `.fidx`/`.didx` suffix may be given or left out.
 */
export function resolveArchiveName(input: string): ArchiveName {
  let name = input;
  if (name.endsWith('.fidx')) name = name.slice(0, -'.fidx'.length);
  else if (name.endsWith('.didx')) name = name.slice(0, -'.didx'.length);
  if (
    !NAME.test(name) ||
    name.length > 200 ||
    name.endsWith('.blob') ||
    name.endsWith('.fidx') ||
    name.endsWith('.didx') ||
    name === 'index.json'
  ) {
    throw new DatastoreError(
      'ERR_LR_ARCHIVE_NAME_INVALID',
      `invalid archive name "${input}": use letters, digits, '.', '_', '-' (e.g. drive-scsi0.img, notes.txt)`,
    );
  }
  if (!name.includes('.')) name = `${name}.img`;
  const kind = name.endsWith('.img') ? 'fixed' : 'dynamic';
  if (input.endsWith('.fidx') && kind !== 'fixed') {
    throw new DatastoreError(
      'ERR_LR_ARCHIVE_NAME_INVALID',
      `invalid archive name "${input}": only .img archives have a .fidx`,
    );
  }
  if (input.endsWith('.didx') && kind !== 'dynamic') {
    throw new DatastoreError(
      'ERR_LR_ARCHIVE_NAME_INVALID',
      `invalid archive name "${input}": .img archives have a .fidx`,
    );
  }
  return { name, filename: `${name}.${kind === 'fixed' ? 'fidx' : 'didx'}`, kind };
}

/** The archive a manifest file entry stands for, or undefined for blobs. */
export function archiveOfFilename(filename: string): ArchiveName | undefined {
  if (!filename.endsWith('.fidx') && !filename.endsWith('.didx')) return undefined;
  try {
    return resolveArchiveName(filename);
  } catch {
    return undefined;
  }
}
