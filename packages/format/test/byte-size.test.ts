import test from 'ava';
import { parseByteSize } from '../src/internal.js';

test('parseByteSize: binary letters and IEC units, decimal kB/MB/GB/TB, any case, spaces', (t) => {
  t.is(parseByteSize('4194304'), 4194304);
  t.is(parseByteSize('512k'), 512 * 1024);
  t.is(parseByteSize('4MiB'), 4 * 1024 ** 2);
  t.is(parseByteSize('1G'), 1024 ** 3);
  t.is(parseByteSize('2 tib'), 2 * 1024 ** 4);
  t.is(parseByteSize('1MB'), 1e6);
  t.is(parseByteSize('3kB'), 3000);
  t.is(parseByteSize(' 1.5g '), 1.5 * 1024 ** 3);
  t.is(parseByteSize('0.5b'), 0.5, 'a fraction of a byte is the caller’s to refuse');
});

test('parseByteSize: anything else is not a size', (t) => {
  for (const text of ['', 'lots', '-1', '1e6', '4 MiBs', '1.', '.5M', '4M4'])
    t.is(parseByteSize(text), undefined, text);
});
