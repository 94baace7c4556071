import { readFileSync } from 'node:fs';
import type { JobType, RenderRequest } from '../renderer.js';

/** One node of a ComfyUI API-format workflow ("Save (API Format)"). */
export interface WorkflowNode {
  class_type: string;
  inputs: Record<string, unknown>;
  _meta?: { title?: string };
}

/** A ComfyUI API-format workflow: node id → node. Inputs that are `[nodeId, outputIndex]` are links. */
export type Workflow = Record<string, WorkflowNode>;

export type SlotName =
  | 'prompt'
  | 'negative'
  | 'seed'
  | 'width'
  | 'height'
  | 'steps'
  | 'frames'
  | 'fps'
  | 'output_prefix'
  | 'checkpoint';

export interface Slot {
  node: string;
  input: string;
}

type SlotMap = Partial<Record<SlotName, Slot>>;

const SAMPLING_SLOTS = {
  checkpoint: { node: '4', input: 'ckpt_name' },
  prompt: { node: '6', input: 'text' },
  negative: { node: '7', input: 'text' },
  width: { node: '5', input: 'width' },
  height: { node: '5', input: 'height' },
  seed: { node: '3', input: 'seed' },
  steps: { node: '3', input: 'steps' },
} as const satisfies SlotMap;

/** Where each named value goes in each template. A slot missing for a type is not used by it. */
export const SLOTS: Record<JobType, SlotMap> = {
  image: {
    ...SAMPLING_SLOTS,
    output_prefix: { node: '9', input: 'filename_prefix' },
  },
  video: {
    ...SAMPLING_SLOTS,
    // One latent per frame: the batch becomes the frames of the animation.
    frames: { node: '5', input: 'batch_size' },
    fps: { node: '10', input: 'fps' },
    output_prefix: { node: '10', input: 'filename_prefix' },
  },
};

/** The node that samples (reports step progress) and the node that saves the result, per template. */
export const ROLES: Record<JobType, { sampler: string; output: string }> = {
  image: { sampler: '3', output: '9' },
  video: { sampler: '3', output: '10' },
};

export interface BuildOptions {
  /** checkpoint file name as ComfyUI lists it under models/checkpoints */
  checkpoint: string;
}

const templates = new Map<JobType, Workflow>();

function template(type: JobType): Workflow {
  let wf = templates.get(type);
  if (!wf) {
    const url = new URL(`./workflows/${type}.json`, import.meta.url);
    wf = JSON.parse(readFileSync(url, 'utf8')) as Workflow;
    assertSlotsExist(type, wf);
    templates.set(type, wf);
  }
  return wf;
}

function assertSlotsExist(type: JobType, wf: Workflow): void {
  for (const [name, slot] of Object.entries(SLOTS[type])) {
    const node = wf[slot.node];
    if (!node || !(slot.input in node.inputs)) {
      throw new Error(`workflow template ${type}: slot ${name} points at a missing node input`);
    }
  }
}

/** ComfyUI joins the prefix under its output directory; keep it to a plain, safe file-name stem. */
export function outputPrefix(jobId: string): string {
  const stem = jobId.replace(/[^A-Za-z0-9_-]/g, '').slice(0, 64);
  return `celforge_${stem || 'job'}`;
}

function slotValues(type: JobType, request: RenderRequest, options: BuildOptions): Record<SlotName, unknown> {
  return {
    prompt: request.prompt,
    negative: request.negativePrompt,
    seed: request.seed,
    width: request.width,
    height: request.height,
    steps: request.steps,
    frames: type === 'video' ? request.frames : 1,
    fps: request.fps,
    output_prefix: outputPrefix(request.jobId),
    checkpoint: options.checkpoint,
  };
}

/** A fresh copy of the template for `type` with every slot filled from the request. */
export function buildWorkflow(type: JobType, request: RenderRequest, options: BuildOptions): Workflow {
  const wf = structuredClone(template(type));
  const values = slotValues(type, request, options);
  for (const [name, slot] of Object.entries(SLOTS[type]) as [SlotName, Slot][]) {
    // assertSlotsExist guarantees the node is there.
    wf[slot.node]!.inputs[slot.input] = values[name];
  }
  return wf;
}
