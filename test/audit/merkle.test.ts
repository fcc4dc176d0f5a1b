import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  EMPTY_ROOT, Frontier, MerkleTree, hashChildren, hashLeaf, rootFromInclusionProof, verifyConsistency, verifyInclusion,
} from '../../src/audit/merkle.js';

const h = (s: string): Buffer => Buffer.from(s, 'hex');
const hexes = (bs: Buffer[]): string[] => bs.map((b) => b.toString('hex'));

// Test vectors of RFC 6962 trees, as published in transparency-dev/merkle (proof/verify_test.go).
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(h);
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const INCLUSION = [
  { index: 0, size: 1, proof: [] },
  { index: 0, size: 8, proof: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'] },
  { index: 5, size: 8, proof: ['bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'] },
  { index: 2, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  { index: 1, size: 5, proof: ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'] },
];
const CONSISTENCY = [
  { first: 1, second: 1, proof: [] },
  { first: 1, second: 8, proof: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'] },
  { first: 6, second: 8, proof: ['0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'] },
  { first: 2, second: 5, proof: ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'] },
  { first: 6, second: 7, proof: ['0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a', 'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'] },
];

/** RFC 6962 §2.1, transcribed literally over arrays: the slow reference the tree is checked against. */
const reference = {
  mth(d: Buffer[]): Buffer {
    if (d.length === 0) return createHash('sha256').digest();
    if (d.length === 1) return d[0]!;
    const k = reference.split(d.length);
    return hashChildren(reference.mth(d.slice(0, k)), reference.mth(d.slice(k)));
  },
  split(n: number): number {
    let k = 1;
    while (k * 2 < n) k *= 2;
    return k;
  },
  path(m: number, d: Buffer[]): Buffer[] {
    if (d.length === 1) return [];
    const k = reference.split(d.length);
    return m < k
      ? [...reference.path(m, d.slice(0, k)), reference.mth(d.slice(k))]
      : [...reference.path(m - k, d.slice(k)), reference.mth(d.slice(0, k))];
  },
  subproof(m: number, d: Buffer[], b: boolean): Buffer[] {
    if (m === d.length) return b ? [] : [reference.mth(d)];
    const k = reference.split(d.length);
    return m <= k
      ? [...reference.subproof(m, d.slice(0, k), b), reference.mth(d.slice(k))]
      : [...reference.subproof(m - k, d.slice(k), false), reference.mth(d.slice(0, k))];
  },
};

const leafHashes = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => hashLeaf(Buffer.from(`leaf ${i}`)));

function flipped(proof: Buffer[], at: number, byte: number): Buffer[] {
  const copy = proof.map((p) => Buffer.from(p));
  copy[at]![byte % copy[at]!.length]! ^= 0x01 << (byte % 8);
  return copy;
}

test('hashes: empty root and leaf/node prefixes', () => {
  assert.equal(EMPTY_ROOT.toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(new MerkleTree().root().toString('hex'), EMPTY_ROOT.toString('hex'));
  assert.equal(hashLeaf(Buffer.alloc(0)).toString('hex'), ROOTS[0]);
  assert.notDeepEqual(hashLeaf(Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(32, 2)])), hashChildren(Buffer.alloc(32, 1), Buffer.alloc(32, 2)));
});

test('vectors: roots of the 8 reference leaves at every size', () => {
  const tree = new MerkleTree();
  const frontier = new Frontier();
  LEAVES.forEach((leaf, i) => {
    tree.append(hashLeaf(leaf));
    frontier.append(hashLeaf(leaf));
    assert.equal(tree.root().toString('hex'), ROOTS[i], `root of ${i + 1}`);
    assert.equal(frontier.root().toString('hex'), ROOTS[i], `frontier root of ${i + 1}`);
  });
  for (let size = 1; size <= 8; size++) assert.equal(tree.root(size).toString('hex'), ROOTS[size - 1]);
});

test('vectors: inclusion proofs are generated and verified as published', () => {
  const tree = MerkleTree.from(LEAVES.map(hashLeaf));
  for (const v of INCLUSION) {
    assert.deepEqual(hexes(tree.inclusionProof(v.index, v.size)), v.proof, `proof of ${v.index} in ${v.size}`);
    assert.ok(verifyInclusion(v.index, v.size, hashLeaf(LEAVES[v.index]!), v.proof.map(h), h(ROOTS[v.size - 1]!)));
  }
});

test('vectors: consistency proofs are generated and verified as published', () => {
  const tree = MerkleTree.from(LEAVES.map(hashLeaf));
  for (const v of CONSISTENCY) {
    assert.deepEqual(hexes(tree.consistencyProof(v.first, v.second)), v.proof, `proof ${v.first} -> ${v.second}`);
    assert.ok(verifyConsistency(v.first, v.second, h(ROOTS[v.first - 1]!), h(ROOTS[v.second - 1]!), v.proof.map(h)));
  }
});

test('vectors: edge cases of consistency (RFC 9162 and the Go reference agree)', () => {
  const [a, b] = [h(ROOTS[0]!), h(ROOTS[1]!)];
  assert.ok(verifyConsistency(0, 0, a, a, []));
  assert.ok(verifyConsistency(0, 5, a, b, []), 'the empty tree is a prefix of every tree');
  assert.ok(!verifyConsistency(0, 5, a, b, [a]), 'but only with an empty proof');
  assert.ok(!verifyConsistency(1, 1, a, b, []), 'same size, different roots');
  assert.ok(!verifyConsistency(1, 1, a, a, [a]), 'same size needs an empty proof');
  assert.ok(!verifyConsistency(2, 1, a, b, []), 'no time travel');
  assert.ok(!verifyConsistency(1, 2, a, b, []), 'empty proof between different sizes');
});

test('tree agrees with the literal RFC 6962 definition (roots, paths, proofs) for sizes 1..70', () => {
  const all = leafHashes(70);
  const tree = MerkleTree.from(all);
  for (let n = 1; n <= 70; n++) {
    const d = all.slice(0, n);
    assert.deepEqual(tree.root(n), reference.mth(d), `root ${n}`);
    for (let m = 0; m < n; m++) assert.deepEqual(tree.inclusionProof(m, n), reference.path(m, d), `path ${m} in ${n}`);
    for (let m = 1; m <= n && n <= 40; m++) {
      assert.deepEqual(tree.consistencyProof(m, n), m === n ? [] : reference.subproof(m, d, true), `proof ${m} -> ${n}`);
    }
  }
});

test('property: every inclusion proof for sizes 1..70 verifies, and any flipped byte or wrong index fails', () => {
  const all = leafHashes(70);
  const tree = MerkleTree.from(all);
  for (let n = 1; n <= 70; n++) {
    const root = tree.root(n);
    for (let m = 0; m < n; m++) {
      const proof = tree.inclusionProof(m, n);
      assert.ok(verifyInclusion(m, n, all[m]!, proof, root), `${m} in ${n}`);
      assert.deepEqual(rootFromInclusionProof(m, n, all[m]!, proof), root);
      for (let i = 0; i < proof.length; i++) {
        assert.ok(!verifyInclusion(m, n, all[m]!, flipped(proof, i, m * 7 + n), root), `flip proof[${i}] of ${m} in ${n}`);
      }
      assert.ok(!verifyInclusion(m, n, flipped([all[m]!], 0, n)[0]!, proof, root), 'flipped leaf');
      assert.ok(!verifyInclusion(m, n, all[m]!, proof, flipped([root], 0, m)[0]!), 'flipped root');
      if (n > 1) {
        assert.ok(!verifyInclusion((m + 1) % n, n, all[m]!, proof, root), 'wrong index');
        assert.ok(!verifyInclusion(m, n, all[m]!, [...proof, root], root), 'trailing garbage');
        assert.ok(!verifyInclusion(m, n, all[m]!, proof.slice(1), root), 'missing element');
      }
    }
  }
});

test('property: every consistency proof for 1 <= m <= n <= 40 verifies, and any flipped byte fails', () => {
  const tree = MerkleTree.from(leafHashes(40));
  for (let n = 1; n <= 40; n++) {
    for (let m = 1; m <= n; m++) {
      const [r1, r2] = [tree.root(m), tree.root(n)];
      const proof = tree.consistencyProof(m, n);
      assert.ok(verifyConsistency(m, n, r1, r2, proof), `${m} -> ${n}`);
      for (let i = 0; i < proof.length; i++) {
        assert.ok(!verifyConsistency(m, n, r1, r2, flipped(proof, i, m * 13 + n)), `flip proof[${i}] of ${m} -> ${n}`);
      }
      if (m < n) {
        assert.ok(!verifyConsistency(m, n, flipped([r1], 0, n)[0]!, r2, proof), 'flipped old root');
        assert.ok(!verifyConsistency(m, n, r1, flipped([r2], 0, m)[0]!, proof), 'flipped new root');
        assert.ok(!verifyConsistency(m, n, r1, r2, proof.slice(0, -1)), 'truncated proof');
        assert.ok(!verifyConsistency(m, n, r1, r2, [...proof, r1]), 'trailing garbage');
        if (m > 1) assert.ok(!verifyConsistency(m - 1, n, r1, r2, proof), 'wrong first size');
      }
    }
  }
});

test('verifiers answer false, never throw, on hostile input', () => {
  const leaf = hashLeaf(Buffer.from('x'));
  for (const [index, size] of [[0, 0], [1, 1], [-1, 4], [0.5, 4], [2 ** 60, 2 ** 61], [Number.NaN, 3]] as const) {
    assert.equal(verifyInclusion(index, size, leaf, [], leaf), false, `${index}/${size}`);
  }
  assert.equal(verifyInclusion(0, 2, leaf, [Buffer.alloc(3)], leaf), false, 'short proof element');
  assert.equal(verifyInclusion(0, 1, Buffer.alloc(0), [], Buffer.alloc(0)), false, 'empty hashes');
  assert.equal(verifyConsistency(3, 2 ** 60, leaf, leaf, [leaf]), false);
  assert.equal(verifyConsistency(-1, 2, leaf, leaf, [leaf]), false);
});

test('truncate undoes appends exactly, and the frontier matches the tree at every size', () => {
  const all = leafHashes(300);
  const tree = MerkleTree.from(all.slice(0, 137));
  const root137 = tree.root();
  for (const h2 of all.slice(137, 250)) tree.append(h2);
  tree.truncate(137);
  assert.equal(tree.size, 137);
  assert.deepEqual(tree.root(), root137);
  const frontier = new Frontier();
  for (let i = 0; i < 300; i++) {
    if (i >= 137) tree.append(all[i]!);
    frontier.append(all[i]!);
    if (i >= 137) assert.deepEqual(frontier.root(), tree.root(), `size ${i + 1}`);
  }
  assert.deepEqual(tree.root(), MerkleTree.from(all).root());
  assert.throws(() => tree.inclusionProof(300), RangeError);
  assert.throws(() => tree.consistencyProof(0, 5), RangeError);
  assert.throws(() => tree.root(301), RangeError);
});
