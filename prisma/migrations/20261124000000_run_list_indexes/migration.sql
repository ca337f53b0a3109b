-- Indexes for listing runs (GET /v1/runs) at scale: every filter walks an index in the page
-- order (created_at, id) and stops after one page, and tag filters use a GIN index.

-- DropIndex
DROP INDEX IF EXISTS "runs_model_id_created_at_idx";

-- DropIndex
DROP INDEX IF EXISTS "runs_dataset_id_created_at_idx";

-- DropIndex
DROP INDEX IF EXISTS "runs_status_created_at_idx";

-- CreateIndex
CREATE INDEX "runs_model_id_created_at_id_idx" ON "runs"("model_id", "created_at", "id");

-- CreateIndex
CREATE INDEX "runs_dataset_id_created_at_id_idx" ON "runs"("dataset_id", "created_at", "id");

-- CreateIndex
CREATE INDEX "runs_status_created_at_id_idx" ON "runs"("status", "created_at", "id");

-- CreateIndex
CREATE INDEX "runs_tags_idx" ON "runs" USING GIN ("tags");

-- CreateIndex
CREATE INDEX "run_shards_finished_at_idx" ON "run_shards"("finished_at");
