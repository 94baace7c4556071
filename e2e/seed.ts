/** Makes the suite's accounts in one process: `node --import tsx e2e/seed.ts <password> <admin email>[,<admin email>…] <user email>…`. */
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';

const [password, admins, ...users] = process.argv.slice(2);
const app = await buildApp(loadConfig(process.env), { worker: false });
try {
  for (const email of admins!.split(',')) await app.services.identity.createUser({ email, password: password!, role: 'admin' });
  for (const email of users) await app.services.identity.createUser({ email, password: password!, role: 'user' });
} finally {
  await app.close();
}
