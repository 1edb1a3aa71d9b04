"""Item tokens (zmqpipeline.protocol.tokens): what a token vouches for, and what no peer
without the run's key can make one vouch for."""

from __future__ import annotations

import pytest

from zmqpipeline.protocol import tokens
from zmqpipeline.protocol.tokens import TOKEN_BYTES, ItemTokens, covered, new_key, token_runs


def test_a_batch_of_fresh_items_is_one_run_and_reissued_ones_split_at_gaps():
    assert token_runs(list(range(100, 164))) == [(100, 64)]
    assert token_runs([7, 3, 4, 9, 8]) == [(3, 2), (7, 3)]
    assert token_runs([5]) == [(5, 1)] and token_runs([]) == []


@pytest.mark.parametrize(
    ("seqs", "spans", "inside"),
    [
        ([3, 4, 5], [(3, 6)], True),
        ([3, 4, 6], [(3, 6)], False),  # 6 is past the end
        ([2, 3], [(3, 6)], False),
        ([1, 2, 10, 11], [(10, 12), (1, 3)], True),
        ([1, 2, 5, 10], [(10, 12), (1, 3)], False),  # 5 in no span
        ([4, 5, 6], [(3, 6), (5, 7)], True),  # overlapping spans count a seq once
        ([4, 5, 9], [(3, 6), (5, 7)], False),
    ],
)
def test_covered_checks_every_seq(seqs, spans, inside):
    assert covered(seqs, spans) is inside


def test_a_token_vouches_for_its_run_its_worker_and_its_task_type_alone():
    maker = ItemTokens(new_key())
    checker = ItemTokens(maker.key)  # the collector's, from START
    (token,) = maker.tokens("T", b"worker-a", list(range(10, 20)))
    assert len(token) == TOKEN_BYTES and tokens.seqs_of(token) == range(10, 20)
    assert checker.span("T", b"worker-a", token) == (10, 20)
    assert checker.span("T", b"worker-b", token) is None  # another worker's
    assert checker.span("U", b"worker-a", token) is None  # another task type's
    assert ItemTokens(new_key()).span("T", b"worker-a", token) is None  # another run's key
    assert checker.span("T", b"worker-a", token[:-1]) is None


def test_a_worker_cannot_stretch_its_own_token_over_other_items():
    """An insider (a genuine worker, a genuine token) edits the run its token covers."""
    maker = ItemTokens(new_key())
    checker = ItemTokens(maker.key)
    (token,) = maker.tokens("T", b"a", [0, 1, 2, 3])
    first, n = tokens.seqs_of(token).start, len(tokens.seqs_of(token))
    for edit in ((first, n + 100), (first + 4, n), (first - 1, n)):
        stretched = tokens._RUN.pack(*edit) + token[tokens._RUN.size :]
        assert checker.span("T", b"a", stretched) is None, edit
    # Its genuine token beside results for items it was not given: not covered.
    span = checker.span("T", b"a", token)
    assert span is not None and not covered([2, 3, 4], [span])


def test_a_checked_token_is_remembered_within_a_bound():
    maker = ItemTokens(new_key())
    checker = ItemTokens(maker.key)
    made = [maker.tokens("T", b"w%d" % (i % 7), [i])[0] for i in range(10_000)]
    for i, token in enumerate(made):
        assert checker.span("T", b"w%d" % (i % 7), token) == (i, i + 1)
    assert len(checker._checked) <= 4096 and len(checker._bases) <= 4096


def test_a_lone_items_token_vouches_for_that_seq_of_that_worker_alone():
    """The one-seq check the collector runs for a lone result (``vouches``)."""
    maker = ItemTokens(new_key())
    checker = ItemTokens(maker.key)
    (token,) = maker.tokens("T", b"a", [41])
    assert tokens.seqs_of(token) == range(41, 42)
    assert checker.vouches("T", b"a", token, 41, 41)
    assert not checker.vouches("T", b"a", token, 42, 42)  # another item
    assert not checker.vouches("T", b"b", token, 41, 41)  # another worker's
    assert not checker.vouches("U", b"a", token, 41, 41)  # another task type's
    assert not ItemTokens(new_key()).vouches("T", b"a", token, 41, 41)  # another run's key
    stretched = tokens._RUN.pack(40, 3) + token[tokens._RUN.size :]
    assert not checker.vouches("T", b"a", stretched, 40, 40)
    (batch,) = maker.tokens("T", b"a", list(range(40, 50)))  # a batch's token covers each
    assert all(checker.vouches("T", b"a", batch, seq, seq) for seq in range(40, 50))
    assert not checker.vouches("T", b"a", batch, 50, 50)
    assert checker.vouches("T", b"a", batch, 40, 49)  # a RESULT of the whole batch
    assert not checker.vouches("T", b"a", batch, 39, 45)
    assert not checker.vouches("T", b"a", batch, 45, 50)
    assert len(checker._checked) == 1  # the batch's token, checked once; no lone one


def test_a_token_made_ahead_is_the_one_the_hash_makes_and_vouches_for_nothing_else():
    """prepare() makes the next lone item's token ahead, at both ends: the token looked up
    must be byte for byte the one the hash makes, and the check by lookup must refuse
    all that the hash refuses."""
    maker = ItemTokens(new_key())
    checker = ItemTokens(maker.key)
    fresh = ItemTokens(maker.key)  # makes every token by the hash
    (first,) = maker.tokens("T", b"a", [5])
    maker.prepare()
    assert maker._ahead[("T", b"a")][0] == 6
    assert maker.tokens("T", b"a", [6]) == fresh.tokens("T", b"a", [6])
    assert maker.tokens("T", b"b", [7]) == fresh.tokens("T", b"b", [7])  # a miss: hashed
    assert checker.vouches("T", b"a", first, 5, 5)
    checker.prepare()
    (six,) = fresh.tokens("T", b"a", [6])
    assert checker._ahead[("T", b"a")] == (6, six, 1)
    assert not checker.vouches("T", b"a", six[:12] + bytes(8), 6, 6)  # a made-up hash
    assert not checker.vouches("T", b"b", six, 6, 6)  # another worker's claim
    assert not checker.vouches("T", b"a", first, 6, 6)  # another item's token
    assert checker.vouches("T", b"a", six, 6, 6)
    (batch,) = fresh.tokens("T", b"a", [6, 7, 8])
    assert checker.vouches("T", b"a", batch, 7, 7)  # not the one made ahead: hashed


def test_the_token_made_ahead_follows_a_workers_step_between_lone_items():
    """Three workers taking turns: each one's next lone item is three seqs on."""
    maker = ItemTokens(new_key())
    for seq in (10, 13):  # the first two guess wrong; then the step is known
        maker.tokens("T", b"a", [seq])
        maker.prepare()
    assert maker._ahead[("T", b"a")][:1] == (16,)
    assert maker.tokens("T", b"a", [16]) == ItemTokens(maker.key).tokens("T", b"a", [16])
    maker.prepare()
    assert maker._ahead[("T", b"a")][0] == 19
