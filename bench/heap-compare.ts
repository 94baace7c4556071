/**
 * Compares heap snapshots (`.heapsnapshot`, as the soak writes with CHAOS_SOAK_SNAPSHOTS): count and
 * self size of the objects of each constructor (closures by function name, strings and arrays by
 * kind), with the groups that grew the most from the first snapshot to the last.
 *
 *   npx tsx bench/heap-compare.ts first.heapsnapshot … last.heapsnapshot
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** `type:name` → { count, bytes } */
function groups(file: string): Map<string, { count: number; bytes: number }> {
  const data = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((field) => fields.indexOf(field)) as [number, number, number];
  const byGroup = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < data.nodes.length; i += width) {
    const type = types[data.nodes[i + typeAt]!]!;
    const named = type === 'object' || type === 'closure' || type === 'native' || type === 'code' || type === 'hidden';
    const key = named ? `${type}:${data.strings[data.nodes[i + nameAt]!]!.slice(0, 80)}` : type;
    const group = byGroup.get(key) ?? { count: 0, bytes: 0 };
    group.count++;
    group.bytes += data.nodes[i + sizeAt]!;
    byGroup.set(key, group);
  }
  return byGroup;
}

const files = process.argv.slice(2);
const all = files.map(groups);
const total = (g: Map<string, { bytes: number }>) => [...g.values()].reduce((sum, { bytes }) => sum + bytes, 0);
console.log(files.map((file, i) => `${file}: ${(total(all[i]!) / 1024 / 1024).toFixed(1)} MB`).join('\n'));
const first = all[0]!;
const last = all.at(-1)!;
const keys = new Set([...first.keys(), ...last.keys()]);
const growth = [...keys]
  .map((key) => ({ key, bytes: (last.get(key)?.bytes ?? 0) - (first.get(key)?.bytes ?? 0), count: (last.get(key)?.count ?? 0) - (first.get(key)?.count ?? 0) }))
  .sort((a, b) => b.bytes - a.bytes);
console.log('\ngroup | count per snapshot | KB per snapshot');
for (const { key } of growth.slice(0, Number(process.env.TOP ?? 40))) {
  console.log(`${key} | ${all.map((g) => g.get(key)?.count ?? 0).join(' → ')} | ${all.map((g) => ((g.get(key)?.bytes ?? 0) / 1024).toFixed(0)).join(' → ')}`);
}
