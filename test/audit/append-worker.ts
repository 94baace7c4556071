/** A separate process appending to the audit trail, for the concurrency test: args <prefix> <count>. */
import { StoreAuditor } from '../../src/audit/service.js';
import { openStore } from '../../src/db/database.js';

const [prefix = 'worker', countText = '100'] = process.argv.slice(2);
const store = openStore({ dataDir: process.env.CELFORGE_DATA_DIR!, databaseUrl: process.env.DATABASE_URL || undefined });
const auditor = new StoreAuditor(store, { batchSize: 7, delayMs: 0, onError: (message, error) => console.error(message, error) });
for (let i = 0; i < Number(countText); i++) {
  auditor.record({ action: `test.${prefix}`, outcome: 'success', target: `${prefix}-${i}` });
  if (i % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
}
await auditor.flush();
await store.close();
