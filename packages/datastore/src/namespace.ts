import { DatastoreError } from './errors.js';

/*
 * PBS backup namespaces (PBS 2.2+). A namespace is written `a/b/c` on the command line and
 * in PBS's API; on disk every component sits under an `ns/` folder:
 *
 *   <store>/ns/a/ns/b/ns/c/<type>/<id>/<time>/
 *
 * The root namespace is the empty string: its groups live at `<store>/<type>/<id>/`, as
 * before namespaces existed. The rules are PBS's (`BackupNamespace` in pbs-api-types):
 * every component matches PROXMOX_SAFE_ID (`[A-Za-z0-9_][A-Za-z0-9._-]*`), at most
 * {@link MAX_NAMESPACE_DEPTH} components, and the name with its slashes at most
 * {@link MAX_NAMESPACE_NAME_CHARS} characters.
 */

/** Deepest namespace below the root (PBS's MAX_NAMESPACE_DEPTH): the root is depth 0. */
export const MAX_NAMESPACE_DEPTH = 7;

/** Longest namespace name, slashes included (PBS's MAX_BACKUP_NAMESPACE_LENGTH, 32 · 8). */
export const MAX_NAMESPACE_NAME_CHARS = 256;

/** Folder that holds the child namespaces of a namespace (and of the store root). */
export const NAMESPACE_DIR = 'ns';

/** The root namespace: snapshots at `<store>/<type>/<id>/<time>`. */
export const ROOT_NAMESPACE = '';

/** PBS's PROXMOX_SAFE_ID: what one namespace component may be. */
const COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** True when `name` may be one component of a namespace (a folder name under `ns/`). */
export function isNamespaceComponent(name: string): boolean {
  return COMPONENT.test(name);
}

function invalid(text: string, why: string): DatastoreError {
  return new DatastoreError(
    'ERR_LR_NAMESPACE_INVALID',
    `invalid namespace "${text}": ${why} (expected NAME or NAME/NAME/…, up to ${MAX_NAMESPACE_DEPTH} levels of [A-Za-z0-9_][A-Za-z0-9._-]*)`,
  );
}

/**
 * Checks a namespace as PBS does and returns it; `''` is the root. Refuses empty
 * components (`a//b`, a trailing slash), components outside PROXMOX_SAFE_ID, more than
 * seven levels and names over 256 characters with `ERR_LR_NAMESPACE_INVALID`.
 */
export function parseNamespace(text: string): string {
  if (text === ROOT_NAMESPACE) return ROOT_NAMESPACE;
  if (text.length > MAX_NAMESPACE_NAME_CHARS)
    throw invalid(text, `longer than ${MAX_NAMESPACE_NAME_CHARS} characters`);
  const parts = text.split('/');
  if (parts.length > MAX_NAMESPACE_DEPTH) throw invalid(text, `deeper than ${MAX_NAMESPACE_DEPTH} levels`);
  for (const part of parts) {
    if (!isNamespaceComponent(part)) throw invalid(text, `"${part}" is not a valid namespace component`);
  }
  return text;
}

/** The components of a (checked) namespace; none for the root. */
export function namespaceComponents(namespace: string): string[] {
  return namespace === ROOT_NAMESPACE ? [] : namespace.split('/');
}

/** Levels below the root: 0 for the root, 1 for `a`, 2 for `a/b`. */
export function namespaceDepth(namespace: string): number {
  return namespaceComponents(namespace).length;
}

/** The namespace's folder relative to the store, as path segments: `['ns', 'a', 'ns', 'b']`. */
export function namespacePathSegments(namespace: string): string[] {
  return namespaceComponents(namespace).flatMap((part) => [NAMESPACE_DIR, part]);
}

/** `ns/a/ns/b` (PBS's `display_as_path`); `''` for the root. */
export function namespacePath(namespace: string): string {
  return namespacePathSegments(namespace).join('/');
}

/** `namespace 'a/b'` or `the root namespace`: how messages name where they looked. */
export function describeNamespace(namespace: string | undefined): string {
  return namespace === undefined || namespace === ROOT_NAMESPACE
    ? 'the root namespace'
    : `namespace '${namespace}'`;
}

/** True when `inner` is `outer` or lies below it (every namespace lies below the root). */
export function namespaceContains(outer: string, inner: string): boolean {
  return outer === ROOT_NAMESPACE || inner === outer || inner.startsWith(`${outer}/`);
}

/**
 * Splits PBS's printed form of a namespaced path, `ns/a/ns/b/vm/100/…`, into the namespace
 * (`a/b`) and the rest (`vm/100/…`). A path without a leading `ns/` is in the root namespace.
 */
export function splitNamespacePath(text: string): { namespace: string; rest: string } {
  const parts = text.split('/');
  const names: string[] = [];
  let i = 0;
  while (parts[i] === NAMESPACE_DIR && i + 1 < parts.length) {
    names.push(parts[i + 1]!);
    i += 2;
  }
  const namespace = names.join('/');
  if (names.length > 0) parseNamespace(namespace);
  return { namespace, rest: parts.slice(i).join('/') };
}

/**
 * `start` and the namespaces below it, down to `levels` more levels and never deeper than
 * PBS allows, depth first in the order `children` gives: the walk a local datastore (its
 * `ns/` folders) and an S3 datastore (its `ns/` prefixes) share. `children(namespace)`
 * lists the valid child names of one namespace.
 */
export async function walkNamespaces(
  start: string,
  levels: number,
  children: (namespace: string) => Promise<string[]>,
): Promise<string[]> {
  const out: string[] = [];
  const walk = async (namespace: string, left: number): Promise<void> => {
    out.push(namespace);
    if (left === 0 || namespaceDepth(namespace) >= MAX_NAMESPACE_DEPTH) return;
    for (const child of await children(namespace))
      await walk(namespace === ROOT_NAMESPACE ? child : `${namespace}/${child}`, left - 1);
  };
  await walk(start, levels);
  return out;
}

/** Which namespaces a listing covers. */
export interface NamespaceScope {
  /** Where to start, `a/b`; default the root namespace. */
  readonly namespace?: string | undefined;
  /**
   * Levels of child namespaces to include below `namespace` (PBS's `max-depth`): 0 (the
   * default) lists `namespace` alone, {@link MAX_NAMESPACE_DEPTH} everything below it.
   */
  readonly maxDepth?: number | undefined;
}

/** Checks a {@link NamespaceScope}'s depth: an integer 0…7 (default 0). */
export function checkMaxDepth(maxDepth: number | undefined): number {
  const depth = maxDepth ?? 0;
  if (!Number.isInteger(depth) || depth < 0 || depth > MAX_NAMESPACE_DEPTH)
    throw new RangeError(`maxDepth must be an integer 0…${MAX_NAMESPACE_DEPTH}, got ${maxDepth}`);
  return depth;
}
