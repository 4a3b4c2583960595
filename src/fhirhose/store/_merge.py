"""Merging a load (a delta of schema tables) into a store generation.

The result is a complete new set of tables, sorted by beneficiary, with every
link rebuilt. Rules (see `store.py` for the public contract):

- Beneficiaries are identified by MBI, resolved through every MBI cross-reference
  (CCLF9 `crnt_num` / `prvs_num`) the store has seen: MBIs linked by it are one
  person. A delta row replaces the stored row of its person; `bene_id` is kept
  for known people, else taken from the delta, else assigned from a counter.
- A claim version is identified by `cur_clm_uniq_id` (`clm_id` if only that is
  given); a version already stored is skipped (CCLF files re-deliver claims).
- Versions are grouped by the CCLF natural key (`clm_grp_id`, a hash of table,
  bene_id — the person, so the MBI as resolved through CCLF9 — and the key
  fields of `NATURAL_KEY`); the latest by effective date (then IDR load date,
  then id) is final action "F", earlier ones "N". A cancel that is the latest
  version is "F": it is the claim's final state, and exporters decide what to
  show of it.
- `sud_ind` is "Y" when a diagnosis code is a substance-use-disorder code
  (`SUD_PREFIXES`), so exports can withhold the claim (42 CFR Part 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..columns import NO_DATE, NO_NUM, Cat, Column, Num, Str, Table, Time
from ..errors import BatchError
from . import _ops, schema

# Substance-use-disorder diagnoses withheld under 42 CFR Part 2:
# ICD-10-CM F10–F19 "Mental and behavioral disorders due to psychoactive substance use"
# except F17 (nicotine dependence); ICD-9-CM 291 (alcohol-induced mental disorders),
# 292 (drug-induced mental disorders), 303 (alcohol dependence), 304 (drug dependence)
# and 305 (nondependent abuse) except 305.1 (tobacco use disorder).
SUD_PREFIXES = (b"F10", b"F11", b"F12", b"F13", b"F14", b"F15", b"F16", b"F18", b"F19",
                b"291", b"292", b"303", b"304", b"305")
_SUD_EXCEPT = (b"3051",)

FINAL_LABELS = ("", "N", "F")
YN_LABELS = ("", "N", "Y")

# Natural keys of claim versions (CCLF Information Packet §5.1.2), per claim table.
NATURAL_KEY = {
    "parta": ("prvdr_oscar_num", "clm_from_dt", "clm_thru_dt"),
    "partb": ("clm_cntl_num",),
    "dme": ("clm_cntl_num",),
    "pde": ("clm_line_from_dt", "prvdr_srvc_id_qlfyr_cd", "clm_srvc_prvdr_gnrc_id_num",
            "clm_dspnsng_stus_cd", "clm_line_rx_srvc_rfrnc_num", "clm_line_rx_fill_num"),
    # A shared-system claim keeps its control number while its status changes: each daily
    # delivery's version replaces the last (the feed is deduplicated within its system).
    "fiss": ("clm_cntl_num",),
    "mcs": ("clm_cntl_num",),
}

# Diagnosis columns per claim table: (own columns, (child table, child column)).
DIAGNOSES = {
    "parta": (("prncpl_dgns_cd", "admtg_dgns_cd"), ("parta_dx", "clm_dgns_cd")),
    "partb": (tuple(f"clm_dgns_{i}_cd" for i in range(1, 13)), ("partb_line", "clm_line_dgns_cd")),
    "dme": ((), None),
    "pde": ((), None),
    "fiss": (("prncpl_dgns_cd", "admtg_dgns_cd"), ("fiss_dx", "clm_dgns_cd")),
    "mcs": (tuple(f"clm_dgns_{i}_cd" for i in range(1, 13)), ("mcs_line", "clm_line_dgns_cd")),
}


@dataclass
class Merged:
    tables: dict[str, Table]
    next_bene_seq: int
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)


def _s(t: Table, name: str) -> np.ndarray:
    return _ops.fixed(t.columns[name])


def _concat_tables(name: str, parts: list[Table]) -> Table:
    """Row-wise concatenation (links dropped: callers rebuild them)."""
    parts = [p for p in parts if p.n] or parts[:1]
    cols = {c: _ops.concat([p.columns[c] for p in parts]) for c in parts[0].columns}
    return Table(name, cols, None, sum(p.n for p in parts), check=False)


def _take_table(t: Table, idx: np.ndarray, links: Mapping[str, np.ndarray] | None = None) -> Table:
    cols = {c: _ops.take(col, idx) for c, col in t.columns.items()}
    return schema.complete(t.name, cols, len(idx), links, check=False)


def _replace(t: Table, **cols: Column) -> Table:
    new = dict(t.columns)
    new.update(cols)
    return Table(t.name, new, t.links, t.n, check=False)


class Resolver:
    """Maps any MBI to one key per person (union of the CCLF9 cross-references)."""

    def __init__(self, crnt: np.ndarray, prvs: np.ndarray):
        parent: dict[bytes, bytes] = {}

        def find(x: bytes) -> bytes:
            root = x
            while parent.get(root, root) != root:
                root = parent[root]
            while parent.get(x, x) != root:
                parent[x], x = root, parent[x]
            return root

        for a, b in zip(crnt.tolist(), prvs.tolist()):
            if not a or not b:
                continue
            ra, rb = find(a), find(b)
            if ra != rb:
                # The smaller MBI is the root: deterministic whatever the input order.
                lo, hi = sorted((ra, rb))
                parent[hi] = lo
                parent.setdefault(lo, lo)
        keys = sorted(parent)
        self.keys = np.array(keys, dtype=bytes) if keys else np.zeros(0, "S1")
        self.roots = np.array([find(k) for k in keys], dtype=bytes) if keys else np.zeros(0, "S1")

    def __call__(self, mbis: np.ndarray) -> np.ndarray:
        if not len(self.keys) or not len(mbis):
            return mbis
        pos = np.searchsorted(self.keys, mbis).clip(0, len(self.keys) - 1)
        hit = self.keys[pos] == mbis
        width = max(mbis.dtype.itemsize, self.roots.dtype.itemsize)
        out = mbis.astype(f"S{width}")
        out[hit] = self.roots[pos[hit]]
        return out


class BeneIndex:
    """Person key → row of the new bene table."""

    def __init__(self, keys_sorted: np.ndarray, rows: np.ndarray):
        self.keys = keys_sorted
        self.rows = rows

    def __call__(self, keys: np.ndarray) -> np.ndarray:
        """Rows for keys; -1 where the person is unknown."""
        if not len(self.keys):
            return np.full(len(keys), -1, np.int64)
        pos = np.searchsorted(self.keys, keys).clip(0, len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, self.rows[pos], -1).astype(np.int64)


def _normalize(delta: Mapping[str, Table]) -> dict[str, Table]:
    """Delta tables completed to the schema, with links checked against their children."""
    out: dict[str, Table] = {}
    for name, t in delta.items():
        if name not in schema.TABLES:
            raise BatchError(f"load: unknown table {name!r} (tables: {sorted(schema.TABLES)})")
        if not isinstance(t, Table):
            raise BatchError(f"load: {name} is a {type(t).__name__}, not a Table")
        if t.name != name:
            raise BatchError(f"load: table {t.name!r} given as {name!r}")
        out[name] = schema.complete(name, t.columns, t.n, t.links)
    for name, t in out.items():
        for child in schema.LINKS.get(name, ()):
            if name == "bene":
                continue  # bene links are optional in a delta (claims may name their MBI)
            have = out[child].n if child in out else 0
            end = int(t.links[child][-1]) if t.n else 0
            if end != have:
                raise BatchError(f"load: {name}.links[{child}] covers {end} rows, {child} has {have}")
    for child in ("parta_rev", "parta_px", "parta_dx", "partb_line", "dme_line", "fiss_rev", "fiss_px", "fiss_dx",
                  "mcs_line"):
        parent = next(p for p, cs in schema.LINKS.items() if child in cs)
        if child in out and out[child].n and parent not in out:
            raise BatchError(f"load: {child} rows without their {parent} table")
    return out


def _empty(name: str) -> Table:
    return schema.complete(name, {}, 0)


def merge(old: Mapping[str, Table], delta_in: Mapping[str, Table], now_ms: int, next_seq: int) -> Merged:
    """The tables of a new generation: `old` (a snapshot's tables) with `delta_in` merged in."""
    delta = _normalize(delta_in)
    d = lambda name: delta.get(name) or _empty(name)  # noqa: E731
    res = Merged({}, next_seq)

    # Cross-references first: they decide who is who.
    xref_all = _concat_tables("bene_mbi", [old["bene_mbi"], d("bene_mbi")])
    x_crnt, x_prvs = _s(xref_all, "crnt_num"), _s(xref_all, "prvs_num")
    resolve = Resolver(x_crnt, x_prvs)

    ob, db = old["bene"], d("bene")
    o_key, d_key, bene, index, res.next_bene_seq, changed = _merge_bene(ob, db, resolve, x_prvs, now_ms, next_seq)
    res.added["bene"] = int(bene.n - ob.n)
    if changed:
        res.updated["bene"] = changed
    nb = bene.n
    bene_links: dict[str, np.ndarray] = {}

    # bene_mbi: deduplicated, grouped by person; cross-references of unknown people last.
    last = _last_of_each(_ops.rowkey(x_crnt, x_prvs))
    rows = index(resolve(x_crnt[last]))
    rows = np.where(rows < 0, nb, rows)
    order = last[np.lexsort((x_prvs[last], x_crnt[last], rows))]
    rows_sorted = np.sort(rows)
    xref = _take_table(xref_all, order)
    bene_links["bene_mbi"] = np.searchsorted(rows_sorted, np.arange(nb + 1), "left").astype(np.int64)
    res.added["bene_mbi"] = int(xref.n - old["bene_mbi"].n)
    out = {"bene_mbi": xref}

    for table in schema.CLAIM_TABLES:
        tabs, links, added, skipped = _merge_claims(table, old, delta, db, bene, index, resolve, now_ms)
        out.update(tabs)
        bene_links[table] = links
        res.added[table] = added
        if skipped:
            res.skipped[table] = skipped
        for child in schema.LINKS.get(table, ()):
            res.added[child] = int(tabs[child].n - old[child].n)

    out["bene"] = schema.complete("bene", bene.columns, nb, bene_links, check=False)
    out["roster"] = _merge_roster(old["roster"], d("roster"), resolve, index)
    out["optout"] = _merge_optout(old["optout"], d("optout"), resolve, index)
    out["enroll"] = _merge_enroll(old["enroll"], d("enroll"), o_key, d_key, index)
    for name in ("roster", "optout", "enroll"):
        res.added[name] = int(out[name].n - old[name].n)
    for t in out.values():
        _check_structure(t)
        t.check_links(out)
    res.tables = out
    return res


def _check_structure(t: Table) -> None:
    """Lengths, offsets and codes of a merged table. Its strings are whole strings of
    inputs validated on the way in, so the UTF-8 pass of `Table.validate` (a copy and
    decode of every string byte of the store) is skipped."""
    for cname, col in t.columns.items():
        if len(col) != t.n:
            raise BatchError(f"{t.name}.{cname}: {len(col)} rows, table has {t.n}")
        if isinstance(col, Str):
            o = col.offsets
            if o[0] != 0 or o[-1] != len(col.data) or (t.n and (np.diff(o) < 0).any()):
                raise BatchError(f"{t.name}.{cname}: offsets do not span its data")
        else:
            col._check(f"{t.name}.{cname}")
    Table(t.name, {}, t.links, t.n)  # link offsets: lengths and order


def _merge_bene(ob: Table, db: Table, resolve: Resolver, obsolete: np.ndarray, now_ms: int, next_seq: int):
    d_mbi = _s(db, "bene_mbi_id")
    if db.n and (d_mbi == b"").any():
        raise BatchError(f"load: bene row {int(np.argmax(d_mbi == b''))} has no bene_mbi_id")
    o_mbi = _s(ob, "bene_mbi_id")
    o_key, d_key = resolve(o_mbi), resolve(d_mbi)
    width = max(o_key.dtype.itemsize, d_key.dtype.itemsize, 1)
    all_key = np.concatenate([o_key.astype(f"S{width}"), d_key.astype(f"S{width}")])
    n_all, n_old = len(all_key), ob.n
    uk, first = np.unique(all_key, return_index=True)
    # A person's row: the last one under a current MBI (one no CCLF9 names as previous), else the last.
    current = ~np.isin(np.concatenate([o_mbi.astype(f"S{width}"), d_mbi.astype(f"S{width}")]), obsolete)
    by_rank = np.lexsort((np.arange(n_all), current, all_key))
    winner = by_rank[_last_of_each(all_key[by_rank])]

    combined = _concat_tables("bene", [ob, db])
    # A delivered row equal to the stored one (CCLF8 repeats every beneficiary every
    # month) keeps the stored row and its last_updated, so `_since` stays meaningful.
    old_ranked = by_rank[by_rank < n_old]
    if len(old_ranked):
        old_keys = all_key[old_ranked]
        old_best = old_ranked[_last_of_each(old_keys)]
        pos = np.searchsorted(uk, all_key[old_best])
        stored = np.full(len(uk), -1, np.int64)
        stored[pos] = old_best
        cand = np.flatnonzero((winner >= n_old) & (stored >= 0))
        if len(cand):
            same = _rows_equal(combined, winner[cand], stored[cand], skip=("bene_id", "last_updated"))
            winner[cand[same]] = stored[cand[same]]
    ids = _ops.fixed(combined.columns["bene_id"])
    known = first < n_old  # people the store has: keep their id
    new_ids = ids[first].astype(object)
    from_delta = ~known & (ids[winner] != b"")
    new_ids[from_delta] = ids[winner][from_delta]
    taken = set(ids[:n_old].tolist())
    clash = [i for i in np.flatnonzero(from_delta) if new_ids[i] in taken]
    if clash:
        raise BatchError(f"load: bene_id {new_ids[clash[0]].decode()!r} already belongs to another beneficiary")
    need = np.flatnonzero(~known & ~from_delta)
    for k, i in enumerate(need):
        new_ids[i] = str(next_seq + k).encode()
    next_seq += len(need)
    id_arr = new_ids.astype(bytes)
    if len(np.unique(id_arr)) != len(id_arr):
        raise BatchError("load: the same bene_id is given to two beneficiaries")

    # Stored order: by bene_id, shorter first (counter ids stay in numeric order).
    lens = np.char.str_len(id_arr) if len(id_arr) else np.zeros(0, np.int64)
    order = np.lexsort((id_arr, lens))
    rows_of_uk = np.empty(len(uk), np.int64)
    rows_of_uk[order] = np.arange(len(uk))
    bene = _take_table(combined, winner[order])
    upd = bene.columns["last_updated"].values.copy()
    from_new = winner[order] >= n_old
    upd[from_new & (upd == NO_NUM)] = now_ms
    bene = _replace(bene, bene_id=_ops.str_from_bytes(id_arr[order]), last_updated=Time(upd))
    changed = int((known & (winner >= n_old)).sum())  # stored people whose row was replaced
    return o_key, d_key, bene, BeneIndex(uk, rows_of_uk), next_seq, changed


def _rows_equal(t: Table, a: np.ndarray, b: np.ndarray, skip: Sequence[str] = ()) -> np.ndarray:
    """Whether rows a[i] and b[i] of `t` hold the same values (columns in `skip` aside)."""
    same = np.ones(len(a), bool)
    for name, col in t.columns.items():
        if name in skip:
            continue
        if isinstance(col, Str):
            same &= _ops.fixed(_ops.take(col, a)) == _ops.fixed(_ops.take(col, b))
        elif isinstance(col, Cat):
            same &= col.codes[a] == col.codes[b]
        else:
            same &= col.values[a] == col.values[b]
    return same


def _child_parent(links: np.ndarray, n_child: int) -> np.ndarray:
    """Parent row of each child row, from the parent's link offsets."""
    return np.repeat(np.arange(len(links) - 1), np.diff(links))[:n_child]


def _sud(col: Str) -> np.ndarray:
    """Rows whose code is a substance-use-disorder diagnosis (dotted or not)."""
    m = _ops.matrix(_ops.fixed(col, 5))
    n = len(m)
    fourth = np.where(m[:, 3] == ord("."), m[:, 4], m[:, 3])
    p3 = np.ascontiguousarray(m[:, :3]).view("S3").reshape(n)
    p4 = np.ascontiguousarray(np.column_stack([m[:, :3], fourth])).view("S4").reshape(n)
    return np.isin(p3, SUD_PREFIXES) & ~np.isin(p4, _SUD_EXCEPT)


def _claim_sud(table: str, t: Table, children: Mapping[str, Table]) -> np.ndarray:
    own, child = DIAGNOSES[table]
    hit = np.zeros(t.n, bool)
    for c in own:
        hit |= _sud(t.columns[c])
    if child is not None and t.n:
        ct = children[child[0]]
        h = _sud(ct.columns[child[1]])
        parents = _child_parent(t.links[child[0]], ct.n)
        hit[parents[h]] = True
    prev = t.columns["sud_ind"]
    hit |= np.asarray(_ops.cat_values(prev) == b"Y")
    return hit


def _group_ids(table: str, t: Table, bene_id: np.ndarray, uid: np.ndarray) -> Str:
    """A stable id of each version's natural-key group: a hash of the table, the
    beneficiary and the key fields (a version without any key field is its own group).

    Text fields are hashed without their NUL padding (each followed by a 0x1F
    separator), so a claim's id does not depend on the widest value of the load
    it arrived in: an adjustment delivered later joins its original's group."""
    n = t.n
    parts: list[np.ndarray] = [np.full(n, table.encode()), bene_id]
    text = [True, True]
    for c in NATURAL_KEY[table]:
        col = t.columns[c]
        if isinstance(col, Str):
            parts.append(_ops.fixed(col))
        elif isinstance(col, Cat):
            parts.append(_ops.cat_values(col))
        else:
            v = col.values
            parts.append(np.where(v == (NO_DATE if v.dtype == np.int32 else NO_NUM), 0, v))
        text.append(parts[-1].dtype.kind == "S")
    key = np.concatenate([_ops.matrix(p) for p in parts[2:]], axis=1) if n else np.zeros((0, 1), np.uint8)
    alone = ~key.any(axis=1)
    parts.append(np.where(alone, uid, b""))
    text.append(True)
    sep = np.full((n, 1), 0x1F, np.uint8)
    blocks, skip = [], []
    for p, is_text in zip(parts, text):
        m = _ops.matrix(p)
        blocks += [m, sep]
        skip += [np.full(m.shape[1], is_text), [False]]
    return _ops.hex64(_ops.fnv64(np.concatenate(blocks, axis=1), np.concatenate(skip)))


def _last_of_each(key: np.ndarray) -> np.ndarray:
    """Index of the last row of each distinct key (in key order)."""
    return len(key) - 1 - np.unique(key[::-1], return_index=True)[1]


def _merge_claims(table, old, delta, db: Table, bene: Table, index: BeneIndex, resolve: Resolver, now_ms):
    children = schema.LINKS.get(table, ())
    oc = old[table]
    dc = delta.get(table) or _empty(table)
    dch = {c: delta.get(c) or _empty(c) for c in children}

    # Version ids.
    uid = _s(dc, "cur_clm_uniq_id")
    cid = _s(dc, "clm_id")
    uid = np.where(uid == b"", cid, uid)
    if dc.n and (uid == b"").any():
        raise BatchError(f"load: {table} row {int(np.argmax(uid == b''))} has neither cur_clm_uniq_id nor clm_id")

    # Beneficiary of each delta claim: its own MBI, else the delta bene row linking to it.
    mbi = _s(dc, "bene_mbi_id")
    if dc.n and (mbi == b"").any() and db.n and int(db.links[table][-1]) == dc.n:
        parents = _child_parent(db.links[table], dc.n)
        mbi = np.where(mbi == b"", _s(db, "bene_mbi_id")[parents], mbi)
    if dc.n and (mbi == b"").any():
        i = int(np.argmax(mbi == b""))
        raise BatchError(f"load: {table} claim {uid[i].decode()!r} names no beneficiary (no bene_mbi_id)")
    d_row = index(resolve(mbi))
    if (d_row < 0).any():
        i = int(np.argmax(d_row < 0))
        raise BatchError(
            f"load: {table} claim {uid[i].decode()!r}: beneficiary {mbi[i].decode()!r} is in neither this load nor the store"
        )
    o_uid = _s(oc, "cur_clm_uniq_id")
    o_row = index(resolve(_s(oc, "bene_mbi_id")))
    if (o_row < 0).any():
        raise BatchError(f"store: {table} has claims of a beneficiary it does not have")

    # Re-delivered versions (already stored, or twice in this load) are skipped.
    _, first = np.unique(uid, return_index=True)
    keep = np.zeros(dc.n, bool)
    keep[first] = True
    keep &= ~np.isin(uid, o_uid)
    kept = np.flatnonzero(keep)
    skipped = int(dc.n - len(kept))

    # Derived columns of the new versions.
    bene_ids = _ops.fixed(bene.columns["bene_id"])
    sud = _claim_sud(table, dc, dch)
    upd = dc.columns["last_updated"].values.copy()
    upd[upd == NO_NUM] = now_ms
    dcx = _replace(
        dc,
        cur_clm_uniq_id=_ops.str_from_bytes(uid),
        clm_id=_ops.str_from_bytes(uid),
        bene_mbi_id=_ops.str_from_bytes(mbi),
        last_updated=Time(upd),
        sud_ind=_ops.set_cat(YN_LABELS, np.where(sud, b"Y", b"N")),
        clm_grp_id=_group_ids(table, dc, bene_ids[d_row] if dc.n else np.zeros(0, "S1"), uid),
    )
    # Stored versions of a person whose bene_id changed (two records found to be one
    # person) get their group ids again, so their versions group with the new ones.
    moved = np.flatnonzero(_s(oc, "bene_id") != bene_ids[o_row]) if oc.n else np.zeros(0, np.int64)
    if len(moved):
        mt = _take_table(oc, moved)
        grp_old = _ops.fixed(oc.columns["clm_grp_id"])
        grp_old[moved] = _ops.fixed(_group_ids(table, mt, bene_ids[o_row[moved]], o_uid[moved]), grp_old.dtype.itemsize)
        oc = _replace(oc, clm_grp_id=_ops.str_from_bytes(grp_old))
    all_t = _concat_tables(table, [oc, _take_table(dcx, kept)])
    rows = np.concatenate([o_row, d_row[kept]])
    width = max(o_uid.dtype.itemsize, uid.dtype.itemsize)
    all_uid = np.concatenate([o_uid.astype(f"S{width}"), uid[kept].astype(f"S{width}")])

    # Final action: the latest version of each (beneficiary, natural key) group.
    grp = _ops.fixed(all_t.columns["clm_grp_id"])
    eff = all_t.columns["clm_efctv_dt"].values
    ld = all_t.columns["clm_idr_ld_dt"].values
    order = np.lexsort((all_uid, ld, eff, grp, rows))
    g_rows, g_grp = rows[order], grp[order]
    is_last = np.ones(len(order), bool)
    if len(order) > 1:
        is_last[:-1] = (g_rows[1:] != g_rows[:-1]) | (g_grp[1:] != g_grp[:-1])
    header = _take_table(all_t, order)
    header = _replace(
        header,
        final_action=_ops.set_cat(FINAL_LABELS, np.where(is_last, b"F", b"N")),
        bene_id=_ops.str_from_bytes(bene_ids[g_rows]) if len(order) else header.columns["bene_id"],
    )

    # Child rows follow their headers' new order.
    out: dict[str, Table] = {}
    hlinks: dict[str, np.ndarray] = {}
    for child in children:
        oct_, dct = old[child], dch[child]
        o_off, d_off = oc.links[child], dc.links[child]
        starts = np.concatenate([o_off[:-1], oct_.n + d_off[:-1][kept]])
        stops = np.concatenate([o_off[1:], oct_.n + d_off[1:][kept]])
        starts, stops = starts[order], stops[order]
        all_c = _concat_tables(child, [oct_, dct])
        out[child] = _take_table(all_c, _ops.ranges(starts, stops))
        hlinks[child] = _ops.offsets_from_counts(stops - starts)
    out[table] = schema.complete(table, header.columns, header.n, hlinks, check=False)
    links = np.searchsorted(g_rows, np.arange(bene.n + 1), "left").astype(np.int64)
    return out, links, len(kept), skipped


def _org_rows(t: Table, resolve: Resolver, index: BeneIndex) -> np.ndarray:
    rows = index(resolve(_s(t, "bene_mbi_id")))
    return np.where(rows < 0, NO_NUM, rows)


def _unknown_last(rows: np.ndarray) -> np.ndarray:
    """Sort key putting people the store does not have (NO_NUM) after the others."""
    return np.where(rows == NO_NUM, np.iinfo(np.int64).max, rows)


def _merge_roster(old: Table, new: Table, resolve: Resolver, index: BeneIndex) -> Table:
    """A delivered roster replaces the stored one of the same ACO, kind and year."""

    def triple(t):
        kind = _ops.cat_values(t.columns["roster_kind"])
        return _ops.rowkey(_s(t, "org_id"), kind, t.columns["performance_year"].values)

    # Keys are computed over both tables at once: rowkey pads to the widest value.
    both = triple(_concat_tables("roster", [old, new]))
    drop = np.isin(both[: old.n], both[old.n :])
    t = _concat_tables("roster", [_take_table(old, np.flatnonzero(~drop)), new])
    mbi = _s(t, "bene_mbi_id")
    if (mbi == b"").any():
        raise BatchError(f"load: roster row {int(np.argmax(mbi == b''))} has no bene_mbi_id")
    tri = triple(t)
    last = _last_of_each(_ops.rowkey(tri, resolve(mbi)))
    rows = _org_rows(t, resolve, index)
    order = last[np.lexsort((mbi[last], _unknown_last(rows[last]), tri[last]))]
    return _replace(_take_table(t, order), bene_row=Num(rows[order]))


def _merge_optout(old: Table, new: Table, resolve: Resolver, index: BeneIndex) -> Table:
    """The latest preference per person (by effective date, then load order) wins."""
    t = _concat_tables("optout", [old, new])
    mbi = _s(t, "bene_mbi_id")
    if (mbi == b"").any():
        raise BatchError(f"load: optout row {int(np.argmax(mbi == b''))} has no bene_mbi_id")
    key = resolve(mbi)
    eff = t.columns["effective_dt"].values
    order = np.lexsort((np.arange(t.n), eff, key))
    k = key[order]
    is_last = np.ones(t.n, bool)
    if t.n > 1:
        is_last[:-1] = k[1:] != k[:-1]
    sel = order[is_last]
    rows = _org_rows(t, resolve, index)[sel]
    sel = sel[np.lexsort((mbi[sel], _unknown_last(rows)))]
    t = _take_table(t, sel)
    return _replace(t, bene_row=Num(_org_rows(t, resolve, index)))


def _merge_enroll(old: Table, new: Table, o_key, d_key, index: BeneIndex) -> Table:
    """Enrollment rows re-pointed at the new bene rows; a delta row replaces the same
    (beneficiary, contract, year)."""
    def rows_of(t, keys, what):
        r = t.columns["bene_row"].values
        if t.n and ((r < 0) | (r >= len(keys))).any():
            raise BatchError(f"load: enroll bene_row {int(r[(r < 0) | (r >= len(keys))][0])} is not a {what} bene row")
        return index(keys[r]) if t.n else np.zeros(0, np.int64)

    rows = np.concatenate([rows_of(old, o_key, "stored"), rows_of(new, d_key, "loaded")])
    t = _concat_tables("enroll", [old, new])
    cn = _s(t, "cntrct_id")
    yr = t.columns["year"].values
    last = _last_of_each(_ops.rowkey(rows, cn, yr))
    sel = last[np.lexsort((yr[last], cn[last], rows[last]))]
    t = _take_table(t, sel)
    return _replace(t, bene_row=Num(rows[sel]))
