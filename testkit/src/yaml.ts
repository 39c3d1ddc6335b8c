/**
 * A tiny YAML emitter for configs built as plain objects: mappings, sequences and scalars
 * (string, number, bigint, boolean, null). Block style, two-space indent, `[]`/`{}` for empty
 * collections. Strings are written plain when that is unambiguous (`127.0.0.1:0`, `10.0.0.0/8`,
 * `500ms`, `http_proxy`) and double-quoted otherwise (anything YAML would read as a number, bool or
 * null, anything with spaces, punctuation or control characters), so a string always reads back as
 * the same string.
 */

export type YamlScalar = string | number | bigint | boolean | null;
export type YamlValue = YamlScalar | YamlValue[] | { [key: string]: YamlValue | undefined };

/** Serializes `value` to a YAML document (ending in a newline). Throws TypeError on values YAML
 * can't say plainly (functions, symbols, Dates, Maps, NaN/Infinity, cycles). */
export function toYaml(value: unknown): string {
    const seen = new Set<object>();
    if (isBlockCollection(value)) {
        return Array.isArray(value) ? emitSequence(value, 0, seen) : emitMapping(value as Record<string, unknown>, 0, seen);
    }
    return scalar(value, '$') + '\n';
}

/** Quotes `s` as a YAML double-quoted scalar if it could not be written plain. */
export function yamlString(s: string): string {
    return isPlainSafe(s) ? s : quote(s);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
    const proto = Object.getPrototypeOf(v);
    return proto === Object.prototype || proto === null;
}

function isBlockCollection(v: unknown): boolean {
    if (Array.isArray(v)) return v.length > 0;
    return isPlainObject(v) && Object.values(v).some((x) => x !== undefined);
}

function enter(seen: Set<object>, v: object, path: string): void {
    if (seen.has(v)) throw new TypeError(`toYaml: cycle at ${path}`);
    seen.add(v);
}

function emitMapping(obj: Record<string, unknown>, indent: number, seen: Set<object>, path = '$'): string {
    enter(seen, obj, path);
    const pad = ' '.repeat(indent);
    let out = '';
    for (const [k, v] of Object.entries(obj)) {
        if (v === undefined) continue;
        const key = yamlString(k);
        const sub = `${path}.${k}`;
        if (isBlockCollection(v)) {
            out += `${pad}${key}:\n`;
            out += Array.isArray(v)
                ? emitSequence(v, indent + 2, seen, sub)
                : emitMapping(v as Record<string, unknown>, indent + 2, seen, sub);
        } else {
            out += `${pad}${key}: ${scalar(v, sub)}\n`;
        }
    }
    seen.delete(obj);
    return out;
}

function emitSequence(arr: unknown[], indent: number, seen: Set<object>, path = '$'): string {
    enter(seen, arr, path);
    const pad = ' '.repeat(indent);
    let out = '';
    arr.forEach((item, i) => {
        const sub = `${path}[${i}]`;
        if (isBlockCollection(item)) {
            // Render the nested block two columns further in, then put "- " where its first line's
            // indentation was: "- name: proxy\n  type: tcp\n".
            const inner = Array.isArray(item)
                ? emitSequence(item, indent + 2, seen, sub)
                : emitMapping(item as Record<string, unknown>, indent + 2, seen, sub);
            out += `${pad}- ${inner.slice(indent + 2)}`;
        } else {
            out += `${pad}- ${scalar(item === undefined ? null : item, sub)}\n`;
        }
    });
    seen.delete(arr);
    return out;
}

function scalar(v: unknown, path: string): string {
    if (v === null) return 'null';
    if (Array.isArray(v)) return '[]'; // non-empty arrays are block collections
    if (isPlainObject(v)) return '{}';
    switch (typeof v) {
        case 'boolean':
            return v ? 'true' : 'false';
        case 'number':
            if (!Number.isFinite(v)) throw new TypeError(`toYaml: ${path} is ${v}, which a config can't hold`);
            return String(v);
        case 'bigint':
            return v.toString();
        case 'string':
            return yamlString(v);
        default:
            throw new TypeError(
                `toYaml: ${path} is a ${v instanceof Object ? v.constructor?.name ?? 'object' : typeof v}; ` +
                    'only plain objects, arrays, strings, numbers, booleans and null can be written',
            );
    }
}

// Strings YAML 1.1 or 1.2 would resolve to something other than a string.
const IMPLICIT_TYPES: RegExp[] = [
    /^(?:~|null|Null|NULL)$/,
    /^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/,
    /^[-+]?[0-9][0-9_]*$/, // decimal, octal with leading 0
    /^[-+]?0[xX][0-9a-fA-F_]+$/,
    /^[-+]?0[oO][0-7_]+$/,
    /^[-+]?0[bB][01_]+$/,
    /^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?$/,
    /^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$/,
    /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$/, // YAML 1.1 base 60: 1:30
    /^[-+]?\.(?:inf|Inf|INF)$/,
    /^\.(?:nan|NaN|NAN)$/,
    /^(?:<<|=)$/,
];

function isPlainSafe(s: string): boolean {
    if (!/^[A-Za-z0-9_./][A-Za-z0-9_./:@+\-]*$/.test(s)) return false;
    if (s.endsWith(':')) return false;
    return !IMPLICIT_TYPES.some((re) => re.test(s));
}

function quote(s: string): string {
    // A JSON string is a valid YAML double-quoted scalar; also escape what JSON leaves raw but
    // YAML does not allow raw in a stream (DEL, C1 controls, BOM, line/paragraph separators).
    return JSON.stringify(s).replace(
        /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g,
        (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
    );
}
