-- Partials are written once and read once (at the merge), then cleared: store them out of line
-- without pglz compression, which costs more time than the space it saves on them.
ALTER TABLE "run_shards" ALTER COLUMN "partial" SET STORAGE EXTERNAL;
