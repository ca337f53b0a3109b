-- AlterTable
ALTER TABLE "run_shards" ADD COLUMN     "timings" JSONB;
