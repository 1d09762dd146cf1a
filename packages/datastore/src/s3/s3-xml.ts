/*
 * The few XML answers of S3 this client reads, parsed by their element names only:
 * ListObjectsV2's ListBucketResult, DeleteObjects' DeleteResult and the Error body. The
 * documents are flat and S3 escapes text with the five XML entities and character
 * references; nothing here needs a general XML parser.
 */

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Replaces XML entities and character references in element text. */
export function xmlText(raw: string): string {
  return raw.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, name: string) => {
    if (name.startsWith('#x')) return String.fromCodePoint(Number.parseInt(name.slice(2), 16));
    if (name.startsWith('#')) return String.fromCodePoint(Number.parseInt(name.slice(1), 10));
    return ENTITIES[name] ?? whole;
  });
}

/** The raw contents of every `<tag>…</tag>` in `xml`, in order. */
function elements(xml: string, tag: string): string[] {
  const out: string[] = [];
  const pattern = new RegExp(`<${tag}(?:\\s[^>]*)?>([\\s\\S]*?)</${tag}>`, 'g');
  for (const match of xml.matchAll(pattern)) out.push(match[1] ?? '');
  return out;
}

/** The text of the first `<tag>` in `xml`, unescaped; undefined when absent. */
export function firstText(xml: string, tag: string): string | undefined {
  const raw = elements(xml, tag)[0];
  return raw === undefined ? undefined : xmlText(raw);
}

/** One page of ListObjectsV2. */
export interface ListPage {
  readonly keys: { key: string; sizeBytes: number }[];
  readonly commonPrefixes: string[];
  /** Present when more pages follow. */
  readonly continuationToken: string | undefined;
}

/** Parses a ListBucketResult; undefined when the body is not one. */
export function parseListPage(xml: string): ListPage | undefined {
  if (!/<ListBucketResult[\s>]/.test(xml)) return undefined;
  const keys = elements(xml, 'Contents').map((contents) => ({
    key: firstText(contents, 'Key') ?? '',
    sizeBytes: Number(firstText(contents, 'Size') ?? Number.NaN),
  }));
  const commonPrefixes = elements(xml, 'CommonPrefixes').map((p) => firstText(p, 'Prefix') ?? '');
  const truncated = firstText(xml, 'IsTruncated') === 'true';
  return {
    keys,
    commonPrefixes,
    continuationToken: truncated ? firstText(xml, 'NextContinuationToken') : undefined,
  };
}

/** `<Code>` and `<Message>` of an S3 error body, when it is one. */
export function parseErrorBody(xml: string): { code: string | undefined; message: string | undefined } {
  const error = elements(xml, 'Error')[0] ?? xml;
  return {
    code: firstText(error, 'Code')?.slice(0, 100),
    message: firstText(error, 'Message')?.slice(0, 500),
  };
}

/** The keys DeleteObjects could not delete, with S3's reason. */
export function parseDeleteErrors(xml: string): { key: string; code: string }[] {
  return elements(xml, 'Error').map((e) => ({
    key: firstText(e, 'Key') ?? '',
    code: firstText(e, 'Code') ?? '',
  }));
}

/** Escapes text for an XML element. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${Object.entries(ENTITIES).find(([, v]) => v === c)![0]};`);
}
