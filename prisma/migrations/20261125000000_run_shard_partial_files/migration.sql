-- Partial statistics move to files under DATA_DIR/partials: pg returns bytea as hex text, which
-- the service decoded on its main thread. "partial" stays for shards done before (read once).
-- "abandoned" counts the times a shard's worker died running it, to stop re-issuing it.
ALTER TABLE "run_shards" ADD COLUMN     "abandoned" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "partial_file" TEXT;
