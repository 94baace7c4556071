import type { paths } from '@celforge/client';

type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never;

export type Me = Json<paths['/api/auth/me']['get']['responses'][200]>;
export type Job = Json<paths['/api/anime/jobs/{id}']['get']['responses'][200]>;
export type JobStatus = Job['status'];
export type JobType = Job['type'];
export type GalleryItem = Json<paths['/api/anime/gallery']['get']['responses'][200]>['items'][number];
export type OwnQuota = Json<paths['/api/anime/quota']['get']['responses'][200]>;
export type GenerateBody = NonNullable<paths['/api/anime/generate']['post']['requestBody']>['content']['application/json'];

export const TERMINAL: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'canceled']);

// Account page
export type AccountSession = Json<paths['/api/auth/sessions']['get']['responses'][200]>['items'][number];
export type ApiKey = Json<paths['/api/auth/api-keys']['get']['responses'][200]>['items'][number];
export type CreatedApiKey = Json<paths['/api/auth/api-keys']['post']['responses'][201]>;
