/*
 * A fault-injecting TargetFiles over the real files, for crash and fault tests:
 * - writes are held back (as in a page cache) until datasync, and reads see them;
 * - crash(): the writes not synced are lost (or some of them land, as a power loss may
 *   leave), and the files of this "process" refuse every further call;
 * - the map write can crash before its rename (after the data sync, the window the
 *   durability rule must survive), or fail with ENOSPC;
 * - target writes can fail with EIO or ENOSPC.
 */
import { writeMapFile } from '../src/alloc-map.js';
import { FileTarget, type TargetFile, type TargetFiles } from '../src/target-file.js';

/** A Node-style system error with `code`. */
export function systemError(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what}`), { code });
}

export class FaultFiles implements TargetFiles {
  readonly #targets: FaultTarget[] = [];
  #crashed = false;
  /** Set to make every target write fail with this code (EIO, ENOSPC) until cleared. */
  failWrites: 'EIO' | 'ENOSPC' | undefined;
  /**
   * The next map write: `crash-before-rename` = the process dies before the new map is in
   * place (after the data sync); `crash-after-rename` = right after it is in place.
   */
  nextMapWrite: 'crash-before-rename' | 'crash-after-rename' | 'ENOSPC' | undefined;
  mapWrites = 0;

  get crashed(): boolean {
    return this.#crashed;
  }

  async openTarget(path: string): Promise<TargetFile> {
    this.#check();
    const target = new FaultTarget(await FileTarget.open(path), this);
    this.#targets.push(target);
    return target;
  }

  async writeMap(path: string, data: Buffer): Promise<void> {
    this.#check();
    const fault = this.nextMapWrite;
    this.nextMapWrite = undefined;
    if (fault === 'crash-before-rename') {
      await this.crash(() => false);
      throw systemError('EIO', 'crashed before the map rename');
    }
    if (fault === 'ENOSPC') throw systemError('ENOSPC', 'no space for the map');
    await writeMapFile(path, data);
    this.mapWrites++;
    if (fault === 'crash-after-rename') {
      await this.crash(() => false);
      throw systemError('EIO', 'crashed right after the map rename');
    }
  }

  /**
   * The process dies: each target's writes not synced are lost, except those `keep(k)`
   * says landed anyway (k counts them in order); every later call fails with EIO.
   */
  async crash(keep: (k: number) => boolean): Promise<void> {
    if (this.#crashed) return;
    this.#crashed = true;
    for (const target of this.#targets) await target.crash(keep);
  }

  /** @internal for FaultTarget */
  check(): void {
    this.#check();
  }

  #check(): void {
    if (this.#crashed) throw systemError('EIO', 'the process crashed');
  }
}

class FaultTarget implements TargetFile {
  readonly #file: FileTarget;
  readonly #files: FaultFiles;
  /** Writes not yet synced, in order. */
  #pending: { data: Uint8Array; position: number }[] = [];
  #closed = false;

  constructor(file: FileTarget, files: FaultFiles) {
    this.#file = file;
    this.#files = files;
  }

  async pread(buffer: Uint8Array, position: number): Promise<void> {
    this.#files.check();
    await this.#file.pread(buffer, position);
    const end = position + buffer.byteLength;
    for (const w of this.#pending) {
      const from = Math.max(position, w.position);
      const to = Math.min(end, w.position + w.data.byteLength);
      if (from < to) buffer.set(w.data.subarray(from - w.position, to - w.position), from - position);
    }
  }

  async pwrite(data: Uint8Array, position: number): Promise<void> {
    this.#files.check();
    if (this.#files.failWrites !== undefined)
      throw systemError(this.#files.failWrites, 'injected write fault');
    this.#pending.push({ data: Uint8Array.from(data), position });
  }

  async pwritev(views: readonly Uint8Array[], position: number): Promise<void> {
    await this.pwrite(Buffer.concat(views), position);
  }

  async datasync(): Promise<void> {
    this.#files.check();
    await this.#apply(() => true);
    await this.#file.datasync();
  }

  size(): Promise<number> {
    this.#files.check();
    return this.#file.size();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (!this.#files.crashed) await this.#apply(() => true); // a clean exit: the page cache is written back
    this.#closed = true;
    await this.#file.close();
  }

  async crash(keep: (k: number) => boolean): Promise<void> {
    await this.#apply(keep);
    if (!this.#closed) {
      this.#closed = true;
      await this.#file.close();
    }
  }

  async #apply(keep: (k: number) => boolean): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    for (const [k, w] of pending.entries()) if (keep(k)) await this.#file.pwrite(w.data, w.position);
  }
}
