import test from 'ava';
import { chooseScale, escapeXml, svgPlot } from '../src/index.js';
import { fakeResult } from './helpers.js';

/**
 * A minimal well-formedness check: every tag is closed in order, attributes are quoted,
 * and no raw `<` or `&` appears in text. Enough to catch an unescaped label or a lost
 * closing tag without an XML parser dependency.
 */
function checkWellFormed(xml: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const token = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|&(?!(?:amp|lt|gt|quot|apos);)/g;
  for (const match of body.matchAll(token)) {
    const [whole, closing, name, , selfClosing] = match;
    if (name === undefined) {
      problems.push(`stray ${whole} at ${match.index}`);
      continue;
    }
    if (closing === '/') {
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open ?? 'nothing'}>`);
    } else if (selfClosing !== '/') {
      stack.push(name);
    }
  }
  if (stack.length > 0) problems.push(`unclosed: ${stack.join(', ')}`);
  return problems;
}

test('the plot is well-formed SVG', (t) => {
  const svg = svgPlot(fakeResult());
  t.true(svg.startsWith('<?xml'));
  t.regex(svg, /<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.deepEqual(checkWellFormed(svg), []);
});

test('the well-formedness check itself catches mistakes', (t) => {
  t.notDeepEqual(checkWellFormed('<svg><text>a < b</text></svg>'), []);
  t.notDeepEqual(checkWellFormed('<svg><text>AT&T</text></svg>'), []);
  t.notDeepEqual(checkWellFormed('<svg><g></svg>'), []);
});

test('the plot labels every case, escaped, and the machine line', (t) => {
  const result = fakeResult();
  const svg = svgPlot(result);
  for (const section of result.sections) {
    t.true(svg.includes(escapeXml(section.title)));
    for (const c of section.cases) t.true(svg.includes(`>${escapeXml(c.name)}<`), c.name);
  }
  t.true(svg.includes('Test CPU &lt;model&gt; &amp; &quot;co&quot;'));
  t.true(svg.includes('skipped: no zstd encoder'));
  t.is((svg.match(/<rect /g) ?? []).length, 1 + 3, 'background plus one bar per measured case');
});

test('escapeXml escapes the five XML specials', (t) => {
  t.is(escapeXml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
});

test('the axis turns logarithmic when values span more than 50×', (t) => {
  const linear = chooseScale([10, 400]);
  t.false(linear.log);
  t.is(linear.x(0), 0);
  t.true(linear.x(400) <= linear.x(linear.ticks.at(-1)!));
  const log = chooseScale([30, 13_000]);
  t.true(log.log);
  t.deepEqual(log.ticks, [10, 100, 1000, 10_000, 20_000]);
  t.deepEqual(chooseScale([30, 9000]).ticks, [10, 100, 1000, 10_000]);
  t.true(log.x(30) > 0 && log.x(30) < log.x(13_000));
});
