"""RFC 9162 Merkle tree hashing, a compact append-only tree, and log proofs.

The journal's tamper evidence rests on this module, so it follows RFC 9162 section 2.1 (the
Certificate Transparency v2 tree, same shape as RFC 6962): proofs made here verify with any other
RFC 9162 implementation (transparency-dev/merkle, Trillian, CT monitors), and theirs verify here.
Where this module says more than the RFC (consistency from size 0 and between equal sizes, the
uint64 size limit, which error a bad proof raises), the docstrings below say so.

- Hashes are SHA-256 with domain separation: a leaf is ``SHA256(0x00 || data)``, an interior
  node ``SHA256(0x01 || left || right)``, the empty tree ``SHA256("")``. Without the prefixes a
  leaf whose data is the 64 bytes of two child hashes would collide with their parent.
- The tree over ``n`` leaves splits at ``k``, the largest power of two below ``n``: the left
  subtree is perfect, the right one holds the remainder. Equivalently, a tree is a row of perfect
  subtrees of decreasing size (the binary digits of ``n``) folded from the right; `CompactTree`
  keeps exactly that row.
- Everything here is pure: no I/O, no clocks, no globals that change. Storage is the caller's; the
  tree reports new nodes through a callback and proof generation reads leaf hashes from a sequence
  or a callback.

Errors: generation and `CompactTree` raise `ValueError` for arguments no correct caller passes
(they are bugs or corrupt checkpoints). Verification never raises anything but `ProofError`,
whatever it is given: `MalformedProofError` when the input cannot be a proof of that shape (bad
size or index, wrong proof length, a hash of the wrong length or type), `RootMismatchError` when the
shape is right and the hashes do not add up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from hashlib import sha256 as _sha256
from itertools import islice
from typing import Final, TypeAlias

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_LENGTH",
    "MAX_TREE_SIZE",
    "CompactTree",
    "LeafSource",
    "MalformedProofError",
    "NodeVisitor",
    "ProofError",
    "PrunedLeaves",
    "RootMismatchError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

MAX_TREE_SIZE: Final = (1 << 64) - 1
"""Largest tree size a proof may name: RFC 9162 carries sizes and indices as uint64."""

MAX_PROOF_LENGTH: Final = 65
"""No proof for sizes below 2**64 is longer: an inclusion path has at most 64 hashes, a
consistency proof at most one more (the subtree root it starts from)."""

EMPTY_ROOT: Final[bytes] = _sha256(b"").digest()
"""Root of the tree with no leaves: SHA256 of the empty string (RFC 9162 section 2.1.1)."""

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"

LeafSource: TypeAlias = "Sequence[bytes] | Callable[[int, int], Sequence[bytes]] | PrunedLeaves"
"""Where proof generation reads leaf hashes: a sequence indexed by leaf number, a callable
``source(begin, end)`` returning the hashes of leaves ``[begin, end)`` (e.g. read from the
journal's storage), so this module holds no I/O, or `PrunedLeaves` for a log whose first leaves
are gone. A callable is called once per proof, with ``begin == 0``."""


# --- hashing ---------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf's data: ``SHA256(0x00 || data)``.

    Requires: ``data`` is bytes-like (any length, empty included).
    Returns: 32 bytes.
    Hazard: the tree functions below take leaf *hashes*. Passing leaf data where a hash is due is
    caught only by its length; hashing a hash again is not caught and builds a different tree.
    """
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node from its children: ``SHA256(0x01 || left || right)``.

    Requires: ``left`` and ``right`` are bytes; in a tree they are 32-byte hashes, but lengths are
    not checked here (this is the hot inner function; callers that take untrusted input check).
    Returns: 32 bytes. Order matters: ``node_hash(a, b) != node_hash(b, a)``.
    """
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n``; requires ``n >= 2``."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(hashes: Sequence[bytes], begin: int, end: int) -> bytes:
    """MTH of leaves ``[begin, end)``, bottom-up, one level at a time.

    Pairing neighbours from the left and carrying an odd last node up unchanged builds exactly
    the RFC tree (the left part of every split is a perfect power of two), in O(end - begin)
    hashes and O(log) passes, without recursion.
    """
    if end <= begin:
        return EMPTY_ROOT
    level = list(hashes[begin:end])
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash (RFC 9162 MTH) of a whole list of leaf hashes.

    Requires: each element is a 32-byte leaf hash (as `leaf_hash` returns); not checked per
    element, for speed.
    Returns: the 32-byte root; `EMPTY_ROOT` for an empty list.
    Cost: ``len(hashes) - 1`` node hashes, iterative, O(n) memory for one level.
    """
    return _subtree_root(hashes, 0, len(hashes))


# --- the compact tree --------------------------------------------------------------------------


def _check_size(size: object, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"{what} must be an int, got {type(size).__name__}")
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError(f"{what} {size} out of range [0, 2**64)")
    return size


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{what} must be bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} has {len(value)} bytes, want {HASH_SIZE}")
    return value


NodeVisitor: TypeAlias = Callable[[int, int, bytes], None]
"""``visit(level, index, hash)``: the perfect subtree covering leaves
``[index << level, (index + 1) << level)`` now exists and has this hash (level 0: the leaf)."""


class CompactTree:
    """An append-only Merkle tree that keeps only its frontier: O(log n) hashes.

    The frontier is the row of roots of the perfect subtrees that cover leaves ``[0, size)``, left
    (largest) to right (smallest): one per set bit of ``size``, in the order of the bits from the
    top. That is all a log needs to append the next leaf and to know the current root, so a
    journal can checkpoint ``state()`` next to a record and resume with `from_state` without
    rereading every leaf.

    Invariants: ``len(frontier) == size.bit_count()``; every frontier hash is 32 bytes.
    Threads: not thread-safe; one owner (the journal's writer thread) appends. ``copy()`` gives a
    reader its own snapshot.
    Hazard: `from_state` trusts the hashes it is given (it checks shape, not content): a tampered
    checkpoint yields a tree whose roots are wrong from then on. Check a restored tree's ``root()``
    against a signed checkpoint, or rebuild from leaves, before trusting it.
    """

    __slots__ = ("_frontier", "_root", "_size")

    def __init__(self) -> None:
        """Create the empty tree (size 0, root `EMPTY_ROOT`)."""
        self._size = 0
        self._frontier: list[bytes] = []
        self._root: bytes | None = EMPTY_ROOT  # cached; None means "recompute"

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactTree:
        """Restore a tree from a `state()` snapshot.

        Requires: ``0 <= size < 2**64``; ``hashes`` holds exactly ``size.bit_count()`` 32-byte
        hashes, left to right, as `state()` returned them.
        Returns: a tree equal to the one that was snapshotted (same size, frontier and root).
        Raises: `ValueError` if the size or the shape of ``hashes`` is wrong. The hash values
        themselves cannot be checked here (see the class hazard).
        """
        size = _check_size(size, "size")
        try:
            frontier = [_check_hash(h, f"frontier hash {i}") for i, h in enumerate(hashes)]
        except TypeError as exc:  # not iterable
            raise ValueError(f"hashes must be a sequence of bytes: {exc}") from None
        if len(frontier) != size.bit_count():
            raise ValueError(
                f"size {size} needs {size.bit_count()} frontier hashes, got {len(frontier)}"
            )
        tree = cls()
        tree._size = size
        tree._frontier = frontier
        tree._root = None if frontier else EMPTY_ROOT
        return tree

    def state(self) -> tuple[int, list[bytes]]:
        """Snapshot for a checkpoint: ``(size, frontier hashes left to right)``.

        Returns: a new list (the caller may keep or mutate it); `from_state` accepts it back.
        """
        return self._size, list(self._frontier)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes, visit: NodeVisitor | None = None) -> None:
        """Append one leaf hash (not leaf data: pass ``leaf_hash(data)``).

        Requires: ``leaf`` is 32 bytes (``bytes`` takes the fast path; other bytes-like values
        are copied to ``bytes`` first, since the frontier must hold immutable hashes).
        Effects: size grows by one; the new leaf merges with each frontier subtree of equal size,
        i.e. one node hash per trailing one bit of the old size (amortised one hash per append,
        no intermediate lists). If ``visit`` is given, it is called for the leaf (level 0) and
        for each perfect subtree this append completes, bottom-up, so the caller can store node
        hashes for later proofs; the tree itself does no I/O.
        Raises: `ValueError` if ``leaf`` is not 32 bytes (bytes, bytearray or memoryview) or the
        tree is full; the tree is unchanged then. Exceptions from ``visit`` propagate and also
        leave the tree unchanged.
        """
        if type(leaf) is not bytes or len(leaf) != HASH_SIZE:
            leaf = _check_hash(leaf, "leaf hash")  # slow path: a bytearray, or an error
        size = self._size
        if size == MAX_TREE_SIZE:
            raise ValueError("tree is full")
        frontier = self._frontier
        h = leaf
        if visit is not None:
            visit(0, size, h)
            level, index, n = 0, size, size
            # Compute the merges first, then commit, so a failing visitor leaves us unchanged.
            merged = len(frontier)
            while n & 1:
                merged -= 1
                h = node_hash(frontier[merged], h)
                level += 1
                index >>= 1
                n >>= 1
                visit(level, index, h)
            del frontier[merged:]
        else:
            n = size
            while n & 1:
                h = node_hash(frontier.pop(), h)
                n >>= 1
        frontier.append(h)
        self._size = size + 1
        self._root = None

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes in order; same contract as `append` for each one.

        Hazard: on an error part way through, the leaves before the bad one stay appended.
        """
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The tree's root hash (RFC 9162 MTH of all leaves so far); `EMPTY_ROOT` when empty.

        Cost: ``len(frontier) - 1`` node hashes, at most 63, then cached until the next append.
        """
        root = self._root
        if root is None:
            frontier = self._frontier
            root = frontier[-1]
            for i in range(len(frontier) - 2, -1, -1):
                root = node_hash(frontier[i], root)
            self._root = root
        return root

    def copy(self) -> CompactTree:
        """An independent tree with the same state (the hashes are immutable and shared)."""
        tree = CompactTree()
        tree._size = self._size
        tree._frontier = list(self._frontier)
        tree._root = self._root
        return tree

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactTree):
            return NotImplemented
        return self._size == other._size and self._frontier == other._frontier

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactTree(size={self._size}, root={self.root().hex()})"


# --- proof generation --------------------------------------------------------------------------


class PrunedLeaves:
    """The leaf hashes of a log whose first ``base.size`` leaves are gone (journal retention),
    with the compact tree at that size standing in for them.

    Every perfect subtree of the frontier is a node of every larger tree, so a proof that needs
    only those nodes and the leaves after them can still be made: the inclusion proof of any
    leaf at or after ``base.size``, and a consistency proof from any size at or after it, in any
    tree size up to ``len(self)``. Proofs that reach inside a pruned subtree raise ValueError.
    Requires: ``hashes`` are the leaf hashes from ``base.size`` on, in order.
    Hazard: like `CompactTree.from_state`, the base is trusted as given; check it against a
    signed root before serving proofs made from it.
    """

    __slots__ = ("_base", "_hashes", "_nodes")

    def __init__(self, base: CompactTree, hashes: Sequence[bytes]) -> None:
        size, frontier = base.state()
        self._base = size
        self._hashes = hashes
        # the frontier's subtrees by the leaf range they cover, left (largest) to right
        self._nodes: dict[tuple[int, int], bytes] = {}
        begin = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                self._nodes[begin, begin + (1 << level)] = frontier[len(self._nodes)]
                begin += 1 << level

    def __len__(self) -> int:
        return self._base + len(self._hashes)

    def subtree_root(self, begin: int, end: int) -> bytes:
        """MTH of leaves ``[begin, end)``, a node of the RFC tree (as proofs ask for them).

        Raises: `ValueError` when it covers pruned leaves that no frontier subtree stands for.
        """
        base = self._base
        if begin >= base:
            return _subtree_root(self._hashes, begin - base, end - base)
        node = self._nodes.get((begin, end))
        if node is not None:
            return node
        if end <= base:
            raise ValueError(f"leaves [{begin}, {end}) were pruned (the log starts at {base})")
        middle = begin + _split(end - begin)
        return node_hash(self.subtree_root(begin, middle), self.subtree_root(middle, end))


def _subtrees(source: LeafSource, size: int) -> Callable[[int, int], bytes]:
    """The subtree roots over leaves ``[0, size)`` of ``source``, as ``root(begin, end)``."""
    if isinstance(source, PrunedLeaves):
        available, root = len(source), source.subtree_root
    else:
        hashes = source(0, size) if callable(source) else source
        available, root = len(hashes), partial(_subtree_root, hashes)
    if available < size:
        raise ValueError(f"leaf source holds {available} hashes, need {size}")
    return root


def inclusion_proof(index: int, size: int, leaf_hashes: LeafSource) -> list[bytes]:
    """The inclusion proof (RFC 9162 section 2.1.3.1, PATH) of leaf ``index`` in tree ``size``.

    Requires: ``0 <= index < size``; ``leaf_hashes`` yields at least ``size`` leaf hashes (extra
    ones are ignored, so the whole journal's list serves any past size).
    Returns: the sibling subtree roots from the leaf up to the root, in RFC order; empty when
    ``size == 1``. `verify_inclusion` and every RFC 9162 verifier accept it.
    Raises: `ValueError` for an index or size out of range or too few leaf hashes.
    Cost: O(size) node hashes (each sibling root is recomputed from the leaves).
    """
    size = _check_size(size, "size")
    index = _check_size(index, "index")
    if index >= size:
        raise ValueError(f"index {index} out of range for size {size}")
    subtree_root = _subtrees(leaf_hashes, size)
    # Walk down from the root, noting the sibling at each split; PATH lists them bottom-up.
    proof: list[bytes] = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _split(end - begin)
        if index < mid:
            proof.append(subtree_root(mid, end))
            end = mid
        else:
            proof.append(subtree_root(begin, mid))
            begin = mid
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, leaf_hashes: LeafSource) -> list[bytes]:
    """The consistency proof (RFC 9162 section 2.1.4.1, PROOF/SUBPROOF) from ``old_size`` to
    ``new_size``.

    Requires: ``0 <= old_size <= new_size``; ``leaf_hashes`` yields at least ``new_size`` hashes.
    Returns: the RFC's SUBPROOF(old_size, D[new_size], true), in RFC order; empty when
    ``old_size == new_size`` and when ``old_size == 0`` (the RFC defines proofs for
    ``0 < old_size < new_size``; every tree extends the empty one, and `verify_consistency`
    accepts exactly an empty proof there).
    Raises: `ValueError` for sizes out of range or too few leaf hashes.
    Cost: O(new_size) node hashes.
    """
    new_size = _check_size(new_size, "new_size")
    old_size = _check_size(old_size, "old_size")
    if old_size > new_size:
        raise ValueError(f"old_size {old_size} > new_size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    subtree_root = _subtrees(leaf_hashes, new_size)
    proof: list[bytes] = []
    begin, end = 0, new_size
    whole = True  # the RFC's flag b: is D[begin:end]'s old part the whole old tree?
    while True:
        if old_size == end:  # SUBPROOF(m, D[m], b)
            if not whole:
                proof.append(subtree_root(begin, end))
            break
        mid = begin + _split(end - begin)
        if old_size <= mid:
            proof.append(subtree_root(mid, end))
            end = mid
        else:
            proof.append(subtree_root(begin, mid))
            begin = mid
            whole = False
    proof.reverse()
    return proof


# --- verification ------------------------------------------------------------------------------


class ProofError(Exception):
    """A proof did not verify. Catch this to treat every verification failure alike."""


class MalformedProofError(ProofError):
    """The input cannot be a proof of the claimed shape: a size or index out of range, a proof of
    the wrong length, or a hash of the wrong type or length. Nothing was hashed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RootMismatchError(ProofError):
    """The proof has the right shape but the hashes do not add up to the expected root.

    Fields: ``computed`` (the root the proof yields), ``expected`` (the root the caller gave),
    ``size`` (the tree size of that root: for a consistency proof, tells the old root from the
    new one; None when not known).
    """

    def __init__(self, computed: bytes, expected: bytes, size: int | None = None) -> None:
        super().__init__(computed, expected, size)  # args kept whole, so it pickles
        self.computed = computed
        self.expected = expected
        self.size = size

    def __str__(self) -> str:
        at = "" if self.size is None else f" at size {self.size}"
        return f"root mismatch{at}: computed {self.computed.hex()}, expected {self.expected.hex()}"


def _size_arg(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedProofError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise MalformedProofError(f"{what} {value} out of range [0, 2**64)")
    return value


def _hash_arg(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise MalformedProofError(f"{what} must be bytes, got {type(value).__name__}")
    try:
        value = bytes(value)
    except (TypeError, ValueError, BufferError) as exc:  # an odd memoryview
        raise MalformedProofError(f"{what} is not readable as bytes: {exc}") from None
    if len(value) != HASH_SIZE:
        raise MalformedProofError(f"{what} has {len(value)} bytes, want {HASH_SIZE}")
    return value


def _proof_arg(proof: object) -> list[bytes]:
    if isinstance(proof, bytes | bytearray | memoryview | str) or not isinstance(proof, Iterable):
        raise MalformedProofError(f"proof must be a sequence of hashes, got {type(proof).__name__}")
    try:
        items = list(islice(proof, MAX_PROOF_LENGTH + 1))  # bounded: never drain a huge iterable
    except Exception as exc:  # a hostile iterable; verification must not crash
        raise MalformedProofError(f"proof is not iterable: {exc!r}") from None
    if len(items) > MAX_PROOF_LENGTH:
        raise MalformedProofError(f"proof has over {MAX_PROOF_LENGTH} hashes")
    return [_hash_arg(h, f"proof[{i}]") for i, h in enumerate(items)]


def _inner_and_border(index: int, size: int) -> tuple[int, int]:
    """Split the inclusion path of leaf ``index`` in tree ``size`` (``index < size``).

    ``inner``: levels below the point where the paths to ``index`` and to the last leaf
    ``size - 1`` part; there the sibling can sit on either side. ``border``: levels above it,
    where the path runs along the tree's right edge and only left siblings (the set bits of
    ``index`` there) exist. The proof holds ``inner + border`` hashes.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain(seed: bytes, index: int, path: Sequence[bytes], inner: int, *, old: bool) -> bytes:
    """Hash ``path`` onto ``seed``, the node numbered ``index`` on its level, up to the root.

    The first ``inner`` hashes are siblings on the side bit ``level`` of ``index`` says (1: the
    sibling is on the left); the rest are left siblings along the right edge. With ``old`` set,
    right siblings are skipped: they were appended after the seed, so the result is the root the
    tree had when the seed's subtree was its last one (a consistency proof's old root).
    """
    h = seed
    for level, sibling in enumerate(path[:inner]):
        if (index >> level) & 1:
            h = node_hash(sibling, h)
        elif not old:
            h = node_hash(h, sibling)
    for sibling in path[inner:]:
        h = node_hash(sibling, h)
    return h


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that an inclusion proof yields for leaf ``index`` of a tree of ``size`` leaves.

    Requires nothing (all input is checked). Returns: 32 bytes. Raises: `MalformedProofError` if
    ``index >= size``, a size or index is not an int in ``[0, 2**64)``, the proof's length is not
    the one RFC 9162 PATH has for ``(index, size)``, or any hash is not 32 bytes. Never raises
    anything else.
    """
    size = _size_arg(size, "size")
    index = _size_arg(index, "index")
    seed = _hash_arg(leaf_hash, "leaf hash")
    hashes = _proof_arg(proof)
    if index >= size:
        raise MalformedProofError(f"index {index} out of range for size {size}")
    inner, border = _inner_and_border(index, size)
    if len(hashes) != inner + border:
        raise MalformedProofError(
            f"proof has {len(hashes)} hashes, want {inner + border} for index {index} of {size}"
        )
    return _chain(seed, index, hashes, inner, old=False)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``proof`` shows leaf ``index`` with hash ``leaf_hash`` in the tree of ``size``
    leaves whose root is ``root``.

    Requires nothing (all input is checked). Returns None on success.
    Raises: `MalformedProofError` (see `root_from_inclusion_proof`; also for a root that is not
    32 bytes), `RootMismatchError` (with ``size``) if the proof yields another root. Never
    raises anything else, whatever it is given.
    Hazard: the size is not hashed into the root. A proof whose left/right pattern is the same at
    another size (leaf 0 of 3 leaves and of 4) verifies there against the same root, in every
    RFC 9162 verifier. Take ``size`` and ``root`` together from one signed checkpoint, never the
    size from whoever supplies the proof.
    """
    expected = _hash_arg(root, "root")
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != expected:
        raise RootMismatchError(computed, expected, size)


def root_from_consistency_proof(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> bytes:
    """The new root that a consistency proof yields, after checking that it reproduces
    ``old_root``.

    Requires nothing (all input is checked). Returns: 32 bytes; ``old_root`` itself when
    ``old_size == new_size`` (and the proof is empty).
    Raises: `MalformedProofError` if a size is not an int in ``[0, 2**64)``,
    ``old_size > new_size``, ``old_size == 0 < new_size`` (an empty tree's root says nothing
    about what follows, so no new root can be derived; `verify_consistency` handles that case),
    the proof's length is not the one RFC 9162 SUBPROOF has for the sizes, or a hash is not 32
    bytes; `RootMismatchError` (``size=old_size``) if the proof does not reproduce
    ``old_root``. Never raises anything else.
    """
    new_size = _size_arg(new_size, "new_size")
    old_size = _size_arg(old_size, "old_size")
    old_root = _hash_arg(old_root, "old root")
    hashes = _proof_arg(proof)
    if old_size > new_size:
        raise MalformedProofError(f"old_size {old_size} > new_size {new_size}")
    if old_size == new_size:
        if hashes:
            raise MalformedProofError(f"equal sizes need an empty proof, got {len(hashes)}")
        return old_root
    if old_size == 0:
        raise MalformedProofError("no new root follows from a proof from the empty tree")

    # The proof is an inclusion path, in the new tree, of the largest perfect subtree that ends
    # the old tree (level `shift`, number `index` on its level), preceded by that subtree's root
    # unless the old tree *is* that subtree (then the old root is the seed and is not sent).
    shift = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> shift
    inner, border = _inner_and_border(old_size - 1, new_size)
    inner -= shift  # levels below `shift` are inside the subtree: not in the proof
    if index == 0:
        seed, path = old_root, hashes
    elif hashes:
        seed, path = hashes[0], hashes[1:]
    else:
        raise MalformedProofError(f"empty proof from {old_size} to {new_size}")
    if len(path) != inner + border:
        want = inner + border + (index != 0)
        raise MalformedProofError(
            f"proof has {len(hashes)} hashes, want {want} from {old_size} to {new_size}"
        )

    computed_old = _chain(seed, index, path, inner, old=True)
    if computed_old != old_root:
        raise RootMismatchError(computed_old, old_root, old_size)
    return _chain(seed, index, path, inner, old=False)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` leaves with root ``new_root`` extends the tree of
    ``old_size`` leaves with root ``old_root`` (append-only: no old leaf changed).

    Requires nothing (all input is checked). Returns None on success.
    Cases: ``old_size == new_size``: the proof must be empty and the roots equal.
    ``old_size == 0``: the proof must be empty and ``old_root`` must be `EMPTY_ROOT`; any new
    tree extends the empty one, so ``new_root`` is only checked for shape (and, when
    ``new_size`` is 0 too, to be `EMPTY_ROOT`).
    Otherwise RFC 9162 section 2.1.4.2.
    Raises: `MalformedProofError` (see `root_from_consistency_proof`; also for a non-empty
    proof from size 0 and for a ``new_root`` that is not 32 bytes), `RootMismatchError` with
    ``size`` telling which root failed (``old_size`` is checked first). Never raises anything
    else, whatever it is given.
    Hazard: as for `verify_inclusion`, ``new_size`` is not hashed into ``new_root``; take both
    from one signed checkpoint.
    """
    new_size = _size_arg(new_size, "new_size")
    old_size = _size_arg(old_size, "old_size")
    expected = _hash_arg(new_root, "new root")
    if old_size == 0:
        old_root = _hash_arg(old_root, "old root")
        hashes = _proof_arg(proof)
        if hashes:
            raise MalformedProofError(f"a proof from size 0 must be empty, got {len(hashes)}")
        if old_root != EMPTY_ROOT:
            raise RootMismatchError(EMPTY_ROOT, old_root, 0)
        if new_size == 0 and expected != EMPTY_ROOT:
            raise RootMismatchError(EMPTY_ROOT, expected, 0)
        return
    computed = root_from_consistency_proof(old_size, new_size, old_root, proof)
    if computed != expected:
        raise RootMismatchError(computed, expected, new_size)
