"""Write and read megatron-core indexed datasets (`.bin` / `.idx`), one per corpus shard.

A shard is written under temporary names and renamed into place only when complete, so a crash
never leaves a `.bin`/`.idx` pair that looks finished. Token ids are int32: Qwen3's vocabulary
(151,936) does not fit megatron's uint16 default.

    from swallow_train.mcore.indexed import ShardWriter
    with ShardWriter(Path("prepared/x/ja/shard-00000")) as w:
        w.add_documents(tokens, lengths)     # flat int32 tokens, one length per document
    # -> shard-00000.bin / .idx, readable with megatron's IndexedDataset
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import TracebackType

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

TOKEN_DTYPE = np.int32


class ShardWriter:
    """One `.bin`/`.idx` pair at `prefix`, committed atomically on a clean exit."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        tag = f".tmp-{os.getpid()}"
        self._tmp_bin = self.prefix.with_name(self.prefix.name + tag + ".bin")
        self._tmp_idx = self.prefix.with_name(self.prefix.name + tag + ".idx")
        self._builder: IndexedDatasetBuilder | None = IndexedDatasetBuilder(
            str(self._tmp_bin), dtype=TOKEN_DTYPE
        )
        self.documents = 0
        self.tokens = 0

    def add_documents(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents given as one flat token array and the length of each document."""
        assert self._builder is not None, "shard already committed or aborted"
        if int(lengths.sum()) != tokens.size:
            raise ValueError(f"lengths add up to {int(lengths.sum())}, tokens has {tokens.size}")
        start = 0
        for n in lengths.tolist():
            self._builder.add_document(tokens[start : start + n], [n])
            start += n
        self.documents += len(lengths)
        self.tokens += tokens.size

    def commit(self) -> None:
        assert self._builder is not None
        self._builder.finalize(str(self._tmp_idx))
        self._builder = None
        os.replace(self._tmp_bin, f"{self.prefix}.bin")
        os.replace(self._tmp_idx, f"{self.prefix}.idx")

    def abort(self) -> None:
        """Remove the temporary files, even when closing them fails (a full disk makes the
        final flush of `close()` raise ENOSPC again)."""
        try:
            if self._builder is not None:
                builder, self._builder = self._builder, None
                builder.data_file.close()
        except OSError:
            pass  # the data is discarded anyway; the file object is closed even so
        finally:
            for tmp in (self._tmp_bin, self._tmp_idx):
                tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


def read_documents(prefix: Path) -> list[np.ndarray]:
    """Every document of a shard as an int array (copied out of the memory map, which closes
    with the dataset; for tests and inspection)."""
    ds = IndexedDataset(str(prefix))
    docs = [np.array(ds[i], dtype=np.int64, copy=True) for i in range(len(ds))]
    del ds
    return docs
