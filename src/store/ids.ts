// Row ids are UUIDs. Anything else can name no row: checking first turns a malformed id into a
// plain "not found" instead of a database type error.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (id: string): boolean => UUID.test(id);
