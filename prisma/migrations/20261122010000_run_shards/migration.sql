-- AlterTable
ALTER TABLE "runs" ADD COLUMN     "timings" JSON;

-- CreateTable
CREATE TABLE "run_shards" (
    "run_id" UUID NOT NULL,
    "index" INTEGER NOT NULL,
    "start" INTEGER NOT NULL,
    "count" INTEGER NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "progress" INTEGER NOT NULL DEFAULT 0,
    "partial" BYTEA,
    "worker_id" TEXT,
    "heartbeat_at" TIMESTAMPTZ(3),
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    "duration_ms" INTEGER,
    "error" TEXT,

    CONSTRAINT "run_shards_pkey" PRIMARY KEY ("run_id","index")
);

-- CreateIndex
CREATE INDEX "run_shards_status_heartbeat_at_idx" ON "run_shards"("status", "heartbeat_at");

-- AddForeignKey
ALTER TABLE "run_shards" ADD CONSTRAINT "run_shards_run_id_fkey" FOREIGN KEY ("run_id") REFERENCES "runs"("id") ON DELETE CASCADE ON UPDATE CASCADE;
