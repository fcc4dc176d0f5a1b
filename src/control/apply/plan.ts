/**
 * The plan: what to create, change, replace and delete so that the daemon holds
 * what the file says. Pure: it compares specs (both sides normalised) field by
 * field and asks `how` whether the fields that differ have an update path — the
 * API knows which updates exist; this only keeps the rules of the comparison:
 *
 * - an object named in the file and held: unchanged, changed or replaced;
 * - named and not held: created; held, not named, and in one of the file's
 *   tenants: deleted with `prune` (never otherwise);
 * - a certificate is known by its set of names: one whose names overlap the
 *   file's but differ is replaced (a name is served by one certificate only);
 * - a site follows its instance by id, so an instance that is replaced takes the
 *   sites following it along (they are made again to follow the new one), as does
 *   a listener they are bound to; a site following a deleted instance is made
 *   again to follow the one its target names now.
 */
import { keyOf, nameOf, tenantOf, type FieldChange, type Held, type InstanceSpec, type PlanEntry, type SiteSpec, type Spec, type Takes, type Wanted } from './types.js';

export interface Decision {
  action: 'change' | 'replace';
  reason?: string;
  takes?: Takes;
}

export interface PlanOptions {
  /** Delete what the file's tenants hold and the file does not name. */
  prune: boolean;
  /** Tenant names whose objects prune may delete. */
  tenants: ReadonlySet<string>;
  /** Whether the differing fields of a held object can be updated in place. */
  how(held: Held, want: Spec, changes: FieldChange[]): Decision;
  /** Objects prune never deletes (the caller's own user), with why. */
  keep?(held: Held): boolean;
}

/** JSON with object keys sorted: equal values, equal text. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Leaf fields of a spec by dotted path; arrays are leaves (compared whole). */
function flatten(v: Record<string, unknown>, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue;
    const path = prefix ? `${prefix}.${k}` : k;
    if (isPlainObject(x) && Object.keys(x).length > 0) flatten(x, path, out);
    else out.set(path, x);
  }
  return out;
}

/** What differs between a held spec and the wanted one; an upload's key is never compared (it cannot be read back). */
export function diff(held: Spec, want: Spec): FieldChange[] {
  const a = flatten(held as unknown as Record<string, unknown>);
  const b = flatten(want as unknown as Record<string, unknown>);
  a.delete('key');
  b.delete('key');
  if (want.kind === 'Certificate' && want.certificate === undefined) a.delete('certificate');
  const changes: FieldChange[] = [];
  for (const field of new Set([...a.keys(), ...b.keys()])) {
    const from = a.get(field);
    const to = b.get(field);
    if (canonical(from) !== canonical(to)) changes.push({ field, from: from ?? null, to: to ?? null });
  }
  return changes;
}

const entryOf = (action: PlanEntry['action'], spec: Spec, extra: Partial<PlanEntry>): PlanEntry => ({
  action, kind: spec.kind, tenant: tenantOf(spec), name: nameOf(spec), document: null, changes: [], ...extra,
});

export function plan(wanted: readonly Wanted[], held: ReadonlyMap<string, Held>, o: PlanOptions): PlanEntry[] {
  const entries: PlanEntry[] = [];
  /** Entries by the key of the object they act on (a held object's key for deletes and replaces). */
  const byKey = new Map<string, PlanEntry>();
  const matched = new Set<string>();
  const add = (key: string, e: PlanEntry): void => {
    entries.push(e);
    byKey.set(key, e);
  };

  const certificatesByTenant = new Map<string, Held[]>();
  for (const h of held.values()) {
    if (h.spec.kind === 'Certificate') (certificatesByTenant.get(h.spec.tenant) ?? certificatesByTenant.set(h.spec.tenant, []).get(h.spec.tenant)!).push(h);
  }

  for (const w of wanted) {
    const key = keyOf(w.spec);
    let h = held.get(key);
    if (!h && w.spec.kind === 'Certificate') {
      // Names served by another certificate of the tenant: that one is replaced by this one.
      const names = new Set(w.spec.hostnames);
      const overlapping = (certificatesByTenant.get(w.spec.tenant) ?? [])
        .filter((c) => !matched.has(keyOf(c.spec)) && (c.spec as { hostnames: string[] }).hostnames.some((n) => names.has(n)));
      h = overlapping[0];
      for (const other of overlapping.slice(1)) {
        matched.add(keyOf(other.spec));
        add(keyOf(other.spec), entryOf('delete', other.spec, { held: other, reason: `its names go to the certificate for ${w.spec.hostnames.join(',')}` }));
      }
    }
    if (!h) {
      add(key, entryOf('create', w.spec, { document: w.document, want: w.spec }));
      continue;
    }
    matched.add(keyOf(h.spec));
    const changes = diff(h.spec, w.spec);
    if (changes.length === 0) continue;
    const d = o.how(h, w.spec, changes);
    add(keyOf(h.spec), entryOf(d.action, w.spec, {
      document: w.document, changes, want: w.spec, held: h,
      ...(d.reason ? { reason: d.reason } : {}), ...(d.takes ? { takes: d.takes } : {}),
    }));
  }

  if (o.prune) {
    for (const [key, h] of held) {
      const tenant = tenantOf(h.spec);
      if (matched.has(key) || h.spec.kind === 'Tenant' || h.spec.kind === 'Listener' || tenant === null || !o.tenants.has(tenant)) continue;
      if (o.keep?.(h)) continue;
      add(key, entryOf('delete', h.spec, { held: h }));
    }
  }

  cascadeToSites(entries, byKey, wanted, held);
  return entries;
}

/** Sites made again because what they follow is replaced, or because they follow a deleted instance. */
function cascadeToSites(entries: PlanEntry[], byKey: Map<string, PlanEntry>, wanted: readonly Wanted[], held: ReadonlyMap<string, Held>): void {
  const replacedInstances = new Map<string, string>(); // held id → tenant/name
  const replacedListeners = new Set<string>();
  for (const e of entries) {
    if (e.action !== 'replace' || !e.held) continue;
    if (e.kind === 'Instance') replacedInstances.set(e.held.id, `${e.tenant}/${e.name}`);
    if (e.kind === 'Listener') replacedListeners.add(e.name);
  }
  const wantedSites = new Map<string, Wanted>();
  for (const w of wanted) if (w.spec.kind === 'Site') wantedSites.set(keyOf(w.spec), w);
  const instanceIds = new Map<string, string>();
  for (const h of held.values()) if (h.spec.kind === 'Instance') instanceIds.set(`${h.spec.tenant}/${h.spec.name}`, h.id);

  for (const [key, h] of held) {
    if (h.spec.kind !== 'Site') continue;
    const site = h.spec;
    const existing = byKey.get(key);
    if (existing?.action === 'delete' || existing?.action === 'replace') continue;
    const w = wantedSites.get(key);
    const target = (w?.spec as SiteSpec | undefined)?.target ?? site.target;
    let reason: string | undefined;
    if (h.instanceId && replacedInstances.has(h.instanceId)) reason = `follows instance ${replacedInstances.get(h.instanceId)}, which is replaced`;
    else if ((site.listeners ?? []).some((l) => replacedListeners.has(l))) reason = 'is bound to a listener that is replaced';
    else if (target.kind === 'instance' && w && h.instanceId !== (instanceIds.get(`${site.tenant}/${target.instance}`) ?? null)) {
      reason = `follows a deleted instance; made again to follow ${site.tenant}/${target.instance}`;
    }
    if (!reason) continue;
    const want = (w?.spec ?? site) as Spec;
    if (existing) {
      existing.action = 'replace';
      existing.reason = reason;
      continue;
    }
    const e = entryOf('replace', want, { document: w?.document ?? null, want, held: h, reason });
    entries.push(e);
    byKey.set(key, e);
  }
}

/** The instances a plan leaves, by tenant/name (for reference checks): held ones not deleted, plus created ones. */
export function instancesAfter(entries: readonly PlanEntry[], held: ReadonlyMap<string, Held>): Map<string, InstanceSpec> {
  const out = new Map<string, InstanceSpec>();
  for (const h of held.values()) if (h.spec.kind === 'Instance') out.set(`${h.spec.tenant}/${h.spec.name}`, h.spec);
  for (const e of entries) {
    if (e.kind !== 'Instance') continue;
    const key = `${e.tenant}/${e.name}`;
    if (e.action === 'delete') out.delete(key);
    else if (e.want) out.set(key, e.want as InstanceSpec);
  }
  return out;
}
