import type { Principal } from '../access/principal.js';
import type { Store } from '../db/database.js';
import { notFound } from '../http/problem.js';
import { UUID } from '../http/pagination.js';
import { findAsset, type AssetRow } from './store.js';
import type { UrlSigner } from './signed-urls.js';

export interface AssetAccess {
  principal: Principal | null;
  expires?: number;
  signature?: string;
}

/** An asset opens for its owner, or for anyone holding a valid signed URL; otherwise it does not exist. */
export async function openableAsset(store: Store, signer: UrlSigner, id: string, access: AssetAccess): Promise<AssetRow> {
  const asset = UUID.test(id) ? await findAsset(store.db, id) : undefined;
  if (!asset) throw notFound('No such asset.');
  const owner = access.principal !== null && access.principal.userId === asset.user_id;
  const signed = access.expires !== undefined && access.signature !== undefined && signer.verify(asset.id, access.expires, access.signature);
  if (!owner && !signed) throw notFound('No such asset.');
  return asset;
}
