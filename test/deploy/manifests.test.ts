/**
 * Static checks of deploy/: every YAML and JSON file parses; the Kubernetes base and overlays (resolved here by a
 * small kustomize subset: resources, namespace, images, replicas and JSON6902 patches — anything else fails the
 * test rather than being ignored), the compose stack and the Dockerfile agree with the code: every environment
 * variable a container gets is declared by the config module of the command it runs and passes that module's
 * validation, ports, probes, the state volume, the advertised host, the ServiceMonitor and the PDB fit together.
 * No cluster, Docker daemon, kubectl or helm runs here, so nothing is applied or built; promtool (where installed)
 * checks the compose Prometheus config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { TOPICS } from '../../schemas/contract.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { loadRuntimeConfig, RUNTIME_VARS } from '../../src/config/runtime.js';
import { DISPATCH_VARS, loadDispatchConfig } from '../../src/dispatch/config.js';
import { loadWarehouseConfig, WAREHOUSE_VARS } from '../../src/warehouse/config.js';
import { parseSegmentsConfig } from '../../src/warehouse/segments.js';
import { tempDir } from '../helpers.js';

const root = join(import.meta.dirname, '..', '..');
const DEPLOY = join(root, 'deploy');
const K8S = join(DEPLOY, 'k8s');
const COMPOSE = join(DEPLOY, 'compose', 'docker-compose.yml');
const DOCKERFILE = join(DEPLOY, 'Dockerfile');

// ---------------------------------------------------------------- loose shapes of what we read

type Json = Record<string, unknown>;
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string; optional?: boolean }; configMapKeyRef?: { name: string; key: string } };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: { cpu?: string; memory?: string }; limits?: { cpu?: string; memory?: string } };
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[] };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
  emptyDir?: Json;
  persistentVolumeClaim?: Json;
}
interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
  terminationGracePeriodSeconds?: number;
}
interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Json;
  data?: Record<string, string>;
}
interface Service extends Resource {
  spec: { clusterIP?: string; publishNotReadyAddresses?: boolean; selector?: Record<string, string>; ports: { name?: string; port: number; targetPort?: string | number }[] };
}
interface StatefulSet extends Resource {
  spec: {
    serviceName: string;
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    template: PodTemplate;
    volumeClaimTemplates?: { metadata: { name: string }; spec: { accessModes?: string[]; resources?: { requests?: { storage?: string } } } }[];
  };
}
interface Deployment extends Resource {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: PodTemplate };
}
interface CronJob extends Resource {
  spec: { suspend?: boolean; schedule: string; jobTemplate: { spec: { template: PodTemplate } } };
}
interface ServiceMonitor extends Resource {
  spec: { jobLabel?: string; selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path?: string }[] };
}
interface Pdb extends Resource {
  spec: { maxUnavailable?: number | string; minAvailable?: number | string; selector: { matchLabels: Record<string, string> } };
}

// ---------------------------------------------------------------- files

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

function yamlDocs(file: string, text = readFileSync(file, 'utf8')): unknown[] {
  const docs = parseAllDocuments(text);
  const out: unknown[] = [];
  for (const d of docs) {
    assert.equal(d.errors.length, 0, `${relative(root, file)}: ${d.errors.map((e) => e.message).join('; ')}`);
    const v: unknown = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

// ---------------------------------------------------------------- a minimal, strict kustomize

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'replicas', 'patches']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass']);

interface Kustomization {
  resources?: string[];
  namespace?: string;
  images?: { name: string; newName?: string; newTag?: string }[];
  replicas?: { name: string; count: number }[];
  patches?: { target?: { kind?: string; name?: string }; patch?: string; path?: string }[];
}
interface PatchOp {
  op: 'add' | 'replace' | 'remove' | 'test';
  path: string;
  value?: unknown;
}

function pointer(path: string): string[] {
  assert.ok(path.startsWith('/'), `JSON pointer ${path}`);
  return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function applyOp(doc: unknown, op: PatchOp, where: string): void {
  const parts = pointer(op.path);
  const last = parts.pop() as string;
  let node: unknown = doc;
  for (const p of parts) {
    assert.ok(node !== null && typeof node === 'object', `${where}: ${op.path}: no parent at ${p}`);
    node = Array.isArray(node) ? node[Number(p)] : (node as Json)[p];
    assert.ok(node !== undefined, `${where}: ${op.path}: ${p} does not exist`);
  }
  assert.ok(node !== null && typeof node === 'object', `${where}: ${op.path}: parent is not an object`);
  const parent = node as Json | unknown[];
  const exists = Array.isArray(parent) ? Number(last) < parent.length : Object.hasOwn(parent, last);
  switch (op.op) {
    case 'test':
      assert.deepEqual(Array.isArray(parent) ? parent[Number(last)] : parent[last], op.value, `${where}: test ${op.path}`);
      return;
    case 'remove':
      assert.ok(exists, `${where}: remove ${op.path}: nothing there`);
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
      return;
    case 'replace':
      assert.ok(exists, `${where}: replace ${op.path}: nothing there`);
      if (Array.isArray(parent)) parent[Number(last)] = op.value;
      else parent[last] = op.value;
      return;
    case 'add':
      if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, op.value);
      else parent[last] = op.value;
      return;
    default:
      assert.fail(`${where}: unsupported op ${String((op as { op: unknown }).op)}`);
  }
}

function podTemplateOf(r: Resource): PodTemplate | undefined {
  if (r.kind === 'StatefulSet' || r.kind === 'Deployment') return (r as StatefulSet | Deployment).spec.template;
  if (r.kind === 'CronJob') return (r as CronJob).spec.jobTemplate.spec.template;
  return undefined;
}

function kustomize(dir: string): Resource[] {
  const file = join(dir, 'kustomization.yaml');
  const k = yamlDocs(file)[0] as Kustomization & Json;
  for (const key of Object.keys(k)) assert.ok(KUSTOMIZATION_KEYS.has(key), `${relative(root, file)}: "${key}" is not supported by the test's kustomize subset; extend test/deploy/manifests.test.ts`);
  const out: Resource[] = [];
  for (const res of k.resources ?? []) {
    const p = resolve(dir, res);
    assert.ok(existsSync(p), `${relative(root, file)}: resource ${res} missing`);
    if (statSync(p).isDirectory()) out.push(...kustomize(p));
    else out.push(...(yamlDocs(p) as Resource[]));
  }
  for (const img of k.images ?? []) {
    for (const r of out) {
      for (const c of podTemplateOf(r)?.spec.containers ?? []) {
        const [name] = c.image.split(':');
        if (name === img.name) c.image = `${img.newName ?? name}:${img.newTag ?? c.image.split(':')[1] ?? ''}`;
      }
    }
  }
  for (const rep of k.replicas ?? []) {
    const target = out.filter((r) => (r.kind === 'StatefulSet' || r.kind === 'Deployment') && r.metadata.name === rep.name);
    assert.equal(target.length, 1, `${relative(root, file)}: replicas for ${rep.name} match ${target.length} workloads`);
    (target[0]?.spec as Json).replicas = rep.count;
  }
  for (const [i, p] of (k.patches ?? []).entries()) {
    const where = `${relative(root, file)} patches[${i}]`;
    const text = p.patch ?? readFileSync(resolve(dir, p.path ?? ''), 'utf8');
    const ops = yamlDocs(file, text)[0];
    assert.ok(Array.isArray(ops), `${where}: only JSON6902 patches (a list of operations) are supported here`);
    const targets = out.filter((r) => (p.target?.kind === undefined || r.kind === p.target.kind) && (p.target?.name === undefined || r.metadata.name === p.target.name));
    assert.equal(targets.length, 1, `${where}: target matches ${targets.length} resources`);
    for (const op of ops as PatchOp[]) applyOp(targets[0], op, where);
  }
  if (k.namespace !== undefined) for (const r of out) if (!CLUSTER_SCOPED.has(r.kind)) r.metadata.namespace = k.namespace;
  return out;
}

// ---------------------------------------------------------------- the code's side

/** Environment variables each command reads. */
function commandVars(): Record<string, Set<string>> {
  const start = new Set(Object.values(RUNTIME_VARS).map((v) => v.env));
  const dispatch = new Set(Object.values(DISPATCH_VARS).map((v) => v.env));
  // The warehouse commands take their Kafka settings from src/config/runtime.ts.
  const warehouse = new Set([...start, ...Object.values(WAREHOUSE_VARS).map((v) => v.env)]);
  return { start, dispatch, demo: start, segments: warehouse, export: warehouse, report: warehouse };
}

/** The subcommands src/cli/main.ts dispatches on. */
function cliCommands(): Set<string> {
  const text = readFileSync(join(root, 'src', 'cli', 'main.ts'), 'utf8');
  return new Set([...text.matchAll(/case '([a-z-]+)':/g)].map((m) => m[1] as string));
}

/** Values for Secret-fed variables, so the whole environment can be run through the config loaders. */
const SECRET_SAMPLES: Record<string, string> = {
  KAIROS_API_KEYS: 'shop:0123456789abcdef0123,crm:fedcba9876543210fedc:read+pii',
  KAIROS_API_TOKEN_SECRET: 'a-sample-secret-of-at-least-32-characters',
  SMTP_URL: 'smtp://user:pass@mail.example.com:587',
  KAIROS_WEBHOOK_SECRET: 'a-sample-webhook-secret',
};

const httpPortDefault = RUNTIME_VARS.httpPort.default;
const dispatchPortDefault = DISPATCH_VARS.httpPort.default;

// ---------------------------------------------------------------- checks of one container

interface EffectiveEnv {
  /** The environment the process sees, for a sample pod (Secrets replaced by samples). */
  readonly env: Record<string, string>;
  /** The literal spec value (with $(VAR) references unexpanded). */
  readonly raw: Record<string, string>;
  readonly helpers: Set<string>;
}

function effectiveEnv(c: Container, resources: Resource[], pod: { name: string; namespace: string }, where: string): EffectiveEnv {
  const env: Record<string, string> = {};
  const raw: Record<string, string> = {};
  const helpers = new Set<string>();
  const fromConfigMaps = new Set<string>();
  for (const ef of c.envFrom ?? []) {
    assert.equal(ef.secretRef, undefined, `${where}: envFrom secretRef hides which variables it sets; use secretKeyRef per variable`);
    const name = ef.configMapRef?.name;
    const cm = resources.find((r) => r.kind === 'ConfigMap' && r.metadata.name === name);
    assert.ok(cm?.data, `${where}: envFrom ConfigMap ${name} is not in the build`);
    for (const [k, v] of Object.entries(cm.data)) {
      env[k] = String(v);
      raw[k] = String(v);
      fromConfigMaps.add(k);
    }
  }
  const seen = new Set<string>();
  for (const e of c.env ?? []) {
    assert.ok(!seen.has(e.name), `${where}: ${e.name} set twice`);
    assert.ok(!fromConfigMaps.has(e.name), `${where}: ${e.name} set both by env and by an envFrom ConfigMap (env wins silently)`);
    seen.add(e.name);
    if (e.valueFrom?.fieldRef) {
      const f = e.valueFrom.fieldRef.fieldPath;
      assert.ok(f === 'metadata.name' || f === 'metadata.namespace', `${where}: ${e.name}: fieldRef ${f}`);
      env[e.name] = f === 'metadata.name' ? pod.name : pod.namespace;
      raw[e.name] = `fieldRef:${f}`;
      helpers.add(e.name);
    } else if (e.valueFrom?.secretKeyRef) {
      const sample = SECRET_SAMPLES[e.name];
      assert.ok(sample !== undefined, `${where}: ${e.name} comes from a Secret; add a sample value to SECRET_SAMPLES`);
      env[e.name] = sample;
      raw[e.name] = `secret:${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`;
    } else {
      assert.equal(typeof e.value, 'string', `${where}: ${e.name} needs a string value (quote numbers in YAML)`);
      const value = e.value as string;
      // Kubernetes expands $(VAR) only for variables defined earlier in the list.
      env[e.name] = value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_m, v: string) => {
        assert.ok(seen.has(v) && v !== e.name, `${where}: ${e.name} references $(${v}), which is not defined before it`);
        return env[v] ?? '';
      });
      raw[e.name] = value;
    }
  }
  for (const h of helpers) {
    assert.ok(Object.values(raw).some((v) => v.includes(`$(${h})`)), `${where}: ${h} (downward API) is set but never used in a $(…) reference`);
  }
  return { env, raw, helpers };
}

function checkContainerEnv(c: Container, vars: Set<string>, e: EffectiveEnv, where: string): void {
  for (const name of Object.keys(e.env)) {
    if (e.helpers.has(name)) continue;
    assert.ok(vars.has(name), `${where}: ${name} is not read by \`kairos ${c.args?.[0] ?? ''}\` (not declared in its config module)`);
  }
}

function checkSecurity(pod: PodSpec, c: Container, where: string): void {
  const nonRoot = c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
  const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
  assert.equal(nonRoot, true, `${where}: runAsNonRoot`);
  assert.ok(uid !== undefined && uid !== 0, `${where}: runAsUser must be set and not 0`);
  assert.equal(uid, 1000, `${where}: runAsUser should be the image's node user (1000)`);
  assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
  assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
  assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${where}: capabilities drop ALL`);
  // With a read-only root filesystem, anything writing a temporary file needs a writable /tmp.
  const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
  assert.ok(tmp && pod.volumes?.find((v) => v.name === tmp.name)?.emptyDir, `${where}: /tmp is an emptyDir`);
}

function checkResources(c: Container, where: string): void {
  assert.ok(c.resources?.requests?.cpu, `${where}: cpu request`);
  assert.ok(c.resources?.requests?.memory, `${where}: memory request`);
  assert.ok(c.resources?.limits?.memory, `${where}: memory limit`);
}

function checkImage(image: string, where: string): void {
  const m = /^([^@]+?)(?::([^:/@]+))?(@sha256:[0-9a-f]{64})?$/.exec(image);
  assert.ok(m, `${where}: image ${image}`);
  assert.ok(m[2] !== undefined || m[3] !== undefined, `${where}: image ${image} has no tag or digest`);
  assert.notEqual(m[2], 'latest', `${where}: image ${image} uses latest`);
}

/** Volumes: every mount has a volume, every volume is mounted; returns mountPath → source. */
function checkVolumes(pod: PodSpec, c: Container, claims: string[], where: string): Map<string, { volume?: Volume; claim?: string; subPath?: string }> {
  const out = new Map<string, { volume?: Volume; claim?: string; subPath?: string }>();
  for (const m of c.volumeMounts ?? []) {
    const volume = pod.volumes?.find((v) => v.name === m.name);
    const claim = claims.includes(m.name) ? m.name : undefined;
    assert.ok(volume ?? claim, `${where}: volumeMount ${m.name} has no volume`);
    out.set(m.mountPath, { ...(volume ? { volume } : {}), ...(claim ? { claim } : {}), ...(m.subPath ? { subPath: m.subPath } : {}) });
  }
  for (const v of pod.volumes ?? []) assert.ok(c.volumeMounts?.some((m) => m.name === v.name), `${where}: volume ${v.name} is never mounted`);
  return out;
}

/** A file a variable points at lies in a mounted volume and, for ConfigMaps and Secrets, is one of its keys. */
function checkFileVar(path: string, mounts: Map<string, { volume?: Volume; claim?: string }>, resources: Resource[], where: string): string | undefined {
  const dir = dirname(path);
  const file = basename(path);
  const m = mounts.get(dir);
  assert.ok(m?.volume, `${where}: ${path} is not in a mounted volume directory`);
  const v = m.volume;
  if (v.configMap) {
    const items = v.configMap.items;
    const key = items ? items.find((i) => i.path === file)?.key : file;
    assert.ok(key, `${where}: ${path}: no item of ConfigMap ${v.configMap.name} has path ${file}`);
    const cm = resources.find((r) => r.kind === 'ConfigMap' && r.metadata.name === v.configMap?.name);
    if (cm) {
      assert.ok(cm.data?.[key] !== undefined, `${where}: ${path}: ConfigMap ${cm.metadata.name} has no key ${key}`);
      return cm.data[key];
    }
    return undefined;
  }
  if (v.secret) {
    assert.ok(!v.secret.items || v.secret.items.some((i) => i.path === file), `${where}: ${path}: no item of Secret ${v.secret.secretName} has path ${file}`);
    return undefined;
  }
  assert.fail(`${where}: ${path} is in volume ${v.name}, which is neither a ConfigMap nor a Secret`);
}

function portOf(c: Container, port: string | number | undefined, where: string): number {
  if (typeof port === 'number') return port;
  const p = c.ports?.find((x) => x.name === port);
  assert.ok(p, `${where}: no container port named ${String(port)}`);
  return p.containerPort;
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

// ---------------------------------------------------------------- one build (base or overlay)

const BUILDS = ['base', 'overlays/dev', 'overlays/prod'] as const;

function checkBuild(name: string, resources: Resource[]): { env: Record<string, string>; sts: StatefulSet } {
  const vars = commandVars();
  const cli = cliCommands();
  const of = <T extends Resource>(kind: string, n?: string): T[] => resources.filter((r) => r.kind === kind && (n === undefined || r.metadata.name === n)) as T[];
  const one = <T extends Resource>(kind: string, n: string): T => {
    const found = of<T>(kind, n);
    assert.equal(found.length, 1, `${name}: ${kind} ${n}`);
    return found[0] as T;
  };
  const keys = resources.map((r) => `${r.kind}/${r.metadata.name}`);
  assert.equal(new Set(keys).size, keys.length, `${name}: duplicate resources`);

  // Every workload's containers.
  let engineEnv: Record<string, string> = {};
  for (const r of resources) {
    const tpl = podTemplateOf(r);
    if (!tpl) continue;
    const claims = r.kind === 'StatefulSet' ? ((r as StatefulSet).spec.volumeClaimTemplates ?? []).map((t) => t.metadata.name) : [];
    if (r.kind !== 'CronJob') {
      const sel = (r as StatefulSet | Deployment).spec.selector.matchLabels;
      assert.ok(matches(sel, tpl.metadata?.labels), `${name}: ${r.kind}/${r.metadata.name}: selector does not match the pod labels`);
    }
    for (const c of tpl.spec.containers) {
      const where = `${name}: ${r.kind}/${r.metadata.name}/${c.name}`;
      checkImage(c.image, where);
      assert.equal(c.command, undefined, `${where}: keep the image's ENTRYPOINT (node bin/kairos.js); set args`);
      const command = c.args?.[0];
      assert.ok(command !== undefined, `${where}: args name the kairos command`);
      const suspended = r.kind === 'CronJob' && (r as CronJob).spec.suspend === true;
      if (!cli.has(command)) assert.ok(suspended, `${where}: \`kairos ${command}\` is not a command of src/cli/main.ts (only a suspended CronJob may wait for one)`);
      const allowed = vars[command];
      assert.ok(allowed, `${where}: no config module known for \`kairos ${command}\``);
      const podName = r.kind === 'StatefulSet' ? `${r.metadata.name}-0` : `${r.metadata.name}-5d8f7c9b4-x2x7k`;
      const e = effectiveEnv(c, resources, { name: podName, namespace: r.metadata.namespace ?? 'default' }, where);
      checkContainerEnv(c, allowed, e, where);
      checkSecurity(tpl.spec, c, where);
      checkResources(c, where);
      const mounts = checkVolumes(tpl.spec, c, claims, where);
      for (const fileVar of ['KAIROS_CAMPAIGNS', 'KAIROS_SEGMENTS_CONFIG', 'GOOGLE_APPLICATION_CREDENTIALS', 'BIGQUERY_KEY_FILE', 'KAIROS_FCM_CA_FILE']) {
        const path = e.env[fileVar];
        if (path === undefined) continue;
        const content = checkFileVar(path, mounts, resources, `${where}: ${fileVar}`);
        // A subPath mount never sees ConfigMap updates, so the campaign reload would silently stop working.
        assert.equal(mounts.get(dirname(path))?.subPath, undefined, `${where}: ${fileVar} mounted with subPath`);
        if (fileVar === 'KAIROS_SEGMENTS_CONFIG') {
          assert.ok(content !== undefined, `${where}: the segments ConfigMap is part of the build`);
          assert.doesNotThrow(() => parseSegmentsConfig(JSON.parse(content), path), `${where}: segments config invalid`);
        }
        if (fileVar === 'KAIROS_CAMPAIGNS') {
          assert.ok(content !== undefined, `${where}: the campaign ConfigMap is part of the build`);
          assert.doesNotThrow(() => resolveCampaigns(JSON.parse(content), path), `${where}: campaign config invalid`);
        }
      }
      // The whole environment through the command's own loader: values, required combinations (avro needs a
      // registry, push needs FCM_PROJECT_ID, …).
      if (command === 'start') assert.doesNotThrow(() => loadRuntimeConfig(e.env), `${where}: loadRuntimeConfig`);
      if (command === 'dispatch') assert.doesNotThrow(() => loadDispatchConfig(e.env), `${where}: loadDispatchConfig`);
      if (['segments', 'export', 'report'].includes(command)) {
        assert.doesNotThrow(() => loadRuntimeConfig(e.env), `${where}: loadRuntimeConfig (Kafka settings)`);
        assert.doesNotThrow(() => loadWarehouseConfig(e.env), `${where}: loadWarehouseConfig`);
      }
      if (command === 'start') engineEnv = e.env;
    }
  }

  // The engine StatefulSet.
  const sts = one<StatefulSet>('StatefulSet', 'kairos');
  const pod = sts.spec.template.spec;
  const c = pod.containers.find((x) => x.args?.[0] === 'start');
  assert.ok(c, `${name}: the StatefulSet runs kairos start`);
  const where = `${name}: StatefulSet/kairos`;
  const port = Number(engineEnv.KAIROS_HTTP_PORT ?? httpPortDefault);
  assert.notEqual(port, 0, `${where}: KAIROS_HTTP_PORT=0 (any free port) cannot be probed`);
  assert.equal(portOf(c, 'http', where), port, `${where}: container port http = KAIROS_HTTP_PORT`);
  assert.equal(c.livenessProbe?.httpGet?.path, '/health/live', `${where}: liveness probe path`);
  assert.equal(portOf(c, c.livenessProbe?.httpGet?.port, where), port, `${where}: liveness probe port`);
  assert.equal(c.readinessProbe?.httpGet?.path, '/health/ready', `${where}: readiness probe path (503 until every task is restored)`);
  assert.equal(portOf(c, c.readinessProbe?.httpGet?.port, where), port, `${where}: readiness probe port`);
  if (c.startupProbe) {
    // Readiness, not the startup probe, must cover a restore: /health/ready stays 503 for as long as it takes.
    assert.equal(c.startupProbe.httpGet?.path, '/health/live', `${where}: startup probe on /health/live`);
    assert.equal(portOf(c, c.startupProbe.httpGet?.port, where), port, `${where}: startup probe port`);
  }
  const ann = sts.spec.template.metadata?.annotations ?? {};
  if (ann['prometheus.io/port'] !== undefined) assert.equal(Number(ann['prometheus.io/port']), port, `${where}: prometheus.io/port`);
  if (ann['prometheus.io/path'] !== undefined) assert.equal(ann['prometheus.io/path'], '/metrics', `${where}: prometheus.io/path`);

  // State: KAIROS_STATE_DIR is the mount of a volumeClaimTemplate (one volume per pod), never the image.
  const stateDir = engineEnv.KAIROS_STATE_DIR;
  assert.ok(stateDir?.startsWith('/'), `${where}: KAIROS_STATE_DIR is set to an absolute path (the default ./.kairos-state is in the read-only image)`);
  const stateMount = c.volumeMounts?.find((m) => m.mountPath === stateDir);
  assert.ok(stateMount, `${where}: nothing mounted at KAIROS_STATE_DIR=${stateDir}`);
  const claim = sts.spec.volumeClaimTemplates?.find((t) => t.metadata.name === stateMount.name);
  assert.ok(claim, `${where}: KAIROS_STATE_DIR is not a volumeClaimTemplate (one volume per pod)`);
  assert.deepEqual(claim.spec.accessModes, ['ReadWriteOnce'], `${where}: state volume access mode`);
  assert.ok(claim.spec.resources?.requests?.storage, `${where}: state volume size`);
  assert.equal(pod.securityContext?.fsGroup, 1000, `${where}: fsGroup makes the volume writable for uid 1000`);

  // Owner routing: each pod advertises its stable DNS name under the headless service.
  const headless = one<Service>('Service', sts.spec.serviceName);
  assert.equal(headless.spec.clusterIP, 'None', `${name}: ${sts.spec.serviceName} is headless`);
  assert.equal(headless.spec.publishNotReadyAddresses, true, `${name}: restoring pods keep their DNS name`);
  assert.ok(matches(headless.spec.selector ?? {}, sts.spec.template.metadata?.labels), `${name}: headless service selects the engine pods`);
  const advertised = c.env?.find((x) => x.name === 'KAIROS_ADVERTISED_HOST');
  assert.equal(advertised?.value, `$(POD_NAME).${sts.spec.serviceName}.$(POD_NAMESPACE).svc.cluster.local`, `${where}: KAIROS_ADVERTISED_HOST`);
  assert.equal(c.env?.find((x) => x.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name', `${where}: POD_NAME from the downward API`);
  assert.equal(c.env?.find((x) => x.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace', `${where}: POD_NAMESPACE from the downward API`);
  const ns = sts.metadata.namespace ?? 'default';
  assert.equal(engineEnv.KAIROS_ADVERTISED_HOST, `kairos-0.${sts.spec.serviceName}.${ns}.svc.cluster.local`, `${where}: advertised host of pod 0`);

  // Services: both reach the container port through the port name.
  for (const svc of of<Service>('Service').filter((s) => matches(s.spec.selector ?? { none: 'x' }, sts.spec.template.metadata?.labels))) {
    for (const p of svc.spec.ports) assert.equal(portOf(c, p.targetPort ?? p.port, `${name}: Service/${svc.metadata.name}`), port, `${name}: Service/${svc.metadata.name} port ${p.name ?? ''}`);
  }
  assert.ok(of<Service>('Service').some((s) => s.spec.clusterIP !== 'None' && matches(s.spec.selector ?? { none: 'x' }, sts.spec.template.metadata?.labels)), `${name}: a client Service for the query API`);

  // Graceful stop: SIGTERM → commit every task and leave the group; the default 30 s is too tight under load.
  assert.ok((pod.terminationGracePeriodSeconds ?? 30) >= 60, `${where}: terminationGracePeriodSeconds ≥ 60`);

  // PodDisruptionBudget: one engine pod at a time, selecting exactly the engine pods.
  const pdbs = of<Pdb>('PodDisruptionBudget').filter((p) => matches(p.spec.selector.matchLabels, sts.spec.template.metadata?.labels));
  assert.equal(pdbs.length, 1, `${name}: one PodDisruptionBudget selects the engine pods`);
  assert.equal(pdbs[0]?.spec.maxUnavailable, 1, `${name}: PDB maxUnavailable 1`);
  for (const other of [...of<Deployment>('Deployment'), ...of<CronJob>('CronJob')]) {
    assert.ok(!matches(pdbs[0]?.spec.selector.matchLabels ?? {}, podTemplateOf(other)?.metadata?.labels), `${name}: the engine PDB also selects ${other.metadata.name}`);
  }

  // ServiceMonitors: the one selecting the engine picks exactly the headless service, scrapes its http port at
  // /metrics, and yields job="kairos" (what deploy/prometheus/alerts.yml selects).
  const promJob = (yamlDocs(join(DEPLOY, 'prometheus', 'prometheus.yml'))[0] as { scrape_configs: { job_name: string }[] }).scrape_configs[0]?.job_name;
  assert.equal(promJob, 'kairos');
  for (const sm of of<ServiceMonitor>('ServiceMonitor')) {
    const selected = of<Service>('Service').filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    assert.equal(selected.length, 1, `${name}: ServiceMonitor/${sm.metadata.name} selects ${selected.length} services (each pod must be scraped once)`);
    const svc = selected[0] as Service;
    const target = [sts, ...of<Deployment>('Deployment')].find((w) => matches(svc.spec.selector ?? { none: 'x' }, w.spec.template.metadata?.labels));
    assert.ok(target, `${name}: ServiceMonitor/${sm.metadata.name}: its service selects no workload`);
    const tc = target.spec.template.spec.containers[0] as Container;
    for (const ep of sm.spec.endpoints) {
      assert.equal(ep.path, '/metrics', `${name}: ServiceMonitor/${sm.metadata.name} path`);
      const sp = svc.spec.ports.find((p) => p.name === ep.port);
      assert.ok(sp, `${name}: ServiceMonitor/${sm.metadata.name}: service ${svc.metadata.name} has no port ${ep.port}`);
      portOf(tc, sp.targetPort ?? sp.port, `${name}: ServiceMonitor/${sm.metadata.name}`);
    }
    if (target === sts) {
      assert.equal(svc.metadata.name, sts.spec.serviceName, `${name}: the engine is scraped through the headless service (restoring pods included)`);
      assert.ok(sm.spec.jobLabel, `${name}: ServiceMonitor/${sm.metadata.name} sets jobLabel`);
      assert.equal(svc.metadata.labels?.[sm.spec.jobLabel], promJob, `${name}: the engine's job label is "${promJob}"`);
    }
  }
  assert.ok(of<ServiceMonitor>('ServiceMonitor').some((sm) => matches(sm.spec.selector.matchLabels, headless.metadata.labels)), `${name}: a ServiceMonitor scrapes the engine`);

  // The stateless services (dispatch, export): Deployments whose port = their KAIROS_HTTP_PORT, probed on it.
  for (const command of ['dispatch', 'export']) {
    const d = of<Deployment>('Deployment').find((x) => x.spec.template.spec.containers.some((y) => y.args?.[0] === command));
    assert.ok(d, `${name}: a Deployment runs kairos ${command}`);
    const dc = d.spec.template.spec.containers.find((x) => x.args?.[0] === command) as Container;
    const dwhere = `${name}: Deployment/${d.metadata.name}`;
    const dEnv = effectiveEnv(dc, resources, { name: 'd', namespace: 'n' }, dwhere).env;
    const dport = Number(dEnv.KAIROS_HTTP_PORT ?? (command === 'dispatch' ? dispatchPortDefault : httpPortDefault));
    assert.equal(portOf(dc, 'http', dwhere), dport, `${dwhere}: container port http = KAIROS_HTTP_PORT`);
    assert.equal(dc.livenessProbe?.httpGet?.path, '/health/live', `${dwhere}: liveness`);
    assert.equal(portOf(dc, dc.livenessProbe?.httpGet?.port, dwhere), dport, `${dwhere}: liveness port`);
    assert.equal(dc.readinessProbe?.httpGet?.path, '/health/ready', `${dwhere}: readiness`);
    assert.equal(portOf(dc, dc.readinessProbe?.httpGet?.port, dwhere), dport, `${dwhere}: readiness port`);
    assert.ok((d.spec.template.spec.terminationGracePeriodSeconds ?? 30) >= 30, `${dwhere}: terminationGracePeriodSeconds`);
    assert.ok(of<ServiceMonitor>('ServiceMonitor').some((sm) => of<Service>('Service').some((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels) && matches(s.spec.selector ?? { none: 'x' }, d.spec.template.metadata?.labels))), `${dwhere}: scraped by a ServiceMonitor`);
  }
  assert.ok(of<CronJob>('CronJob').some((j) => j.spec.jobTemplate.spec.template.spec.containers.some((x) => x.args?.slice(0, 2).join(' ') === 'segments sync')), `${name}: a CronJob runs kairos segments sync`);

  // Standby copies need somewhere to live: more instances than standby replicas.
  const standby = Number(engineEnv.KAIROS_STANDBY_REPLICAS ?? RUNTIME_VARS.standbyReplicas.default);
  assert.ok((sts.spec.replicas ?? 1) > standby, `${name}: ${sts.spec.replicas ?? 1} replicas cannot hold ${standby} standby copies`);
  return { env: engineEnv, sts };
}

// ---------------------------------------------------------------- tests

test('every YAML and JSON file under deploy/ parses (all documents)', () => {
  const files = walk(DEPLOY).filter((f) => /\.(ya?ml|json)$/.test(f));
  assert.ok(files.length >= 15, `found only ${files.length} files`);
  for (const f of files) {
    if (f.endsWith('.json')) assert.doesNotThrow(() => JSON.parse(readFileSync(f, 'utf8')), relative(root, f));
    else assert.ok(yamlDocs(f).length > 0, `${relative(root, f)} is empty`);
  }
  // Every Kubernetes manifest under k8s/ is listed in a kustomization, so nothing is silently left out.
  const listed = new Set<string>();
  for (const k of walk(K8S).filter((f) => basename(f) === 'kustomization.yaml')) {
    listed.add(k);
    for (const r of (yamlDocs(k)[0] as Kustomization).resources ?? []) listed.add(resolve(dirname(k), r));
  }
  for (const f of walk(K8S).filter((x) => /\.ya?ml$/.test(x))) assert.ok(listed.has(f), `${relative(root, f)} is in no kustomization.yaml`);
});

for (const build of BUILDS) {
  test(`k8s ${build}: manifests agree with the config schema, ports, probes, state volume, routing, PDB, ServiceMonitor`, () => {
    const resources = kustomize(join(K8S, build));
    for (const r of resources) {
      assert.ok(r.apiVersion && r.kind && r.metadata.name, `${build}: a resource without apiVersion/kind/name`);
      if (build !== 'base') assert.ok(CLUSTER_SCOPED.has(r.kind) || r.metadata.namespace, `${build}: ${r.kind}/${r.metadata.name} has no namespace`);
      else assert.equal(r.metadata.namespace, undefined, `base must stay namespace-agnostic: ${r.kind}/${r.metadata.name}`);
      // Secrets are referenced, never committed.
      assert.notEqual(r.kind, 'Secret', `${build}: a Secret is committed`);
    }
    const { env, sts } = checkBuild(build, resources);
    if (build === 'overlays/prod') {
      assert.equal(env.KAIROS_STANDBY_REPLICAS, '1', 'prod keeps one warm standby per task');
      assert.ok((sts.spec.replicas ?? 1) >= 3, 'prod runs at least three engine pods');
      assert.equal(env.KAIROS_API_AUTH ?? RUNTIME_VARS.apiAuth.default, 'required', 'prod query API requires credentials');
      for (const r of resources) for (const c of podTemplateOf(r)?.spec.containers ?? []) assert.match(c.image, /^registry\.example\.com\/crm\/kairos:/);
    }
    if (build === 'overlays/dev') assert.equal(sts.spec.replicas, 1);
  });
}

test('the overlays keep the base\'s resources, ports and volume mounts', () => {
  const base = kustomize(join(K8S, 'base'));
  for (const overlay of ['overlays/dev', 'overlays/prod']) {
    const built = kustomize(join(K8S, overlay));
    assert.deepEqual(built.map((r) => `${r.kind}/${r.metadata.name}`), base.map((r) => `${r.kind}/${r.metadata.name}`), `${overlay}: same resources as the base`);
    const sts = built.find((r) => r.kind === 'StatefulSet') as StatefulSet;
    const baseSts = base.find((r) => r.kind === 'StatefulSet') as StatefulSet;
    assert.deepEqual(sts.spec.template.spec.containers[0]?.volumeMounts, baseSts.spec.template.spec.containers[0]?.volumeMounts, `${overlay}: volume mounts unchanged`);
    assert.deepEqual(sts.spec.template.spec.containers[0]?.ports, baseSts.spec.template.spec.containers[0]?.ports, `${overlay}: ports unchanged`);
  }
});

test('compose: a full local stack whose Kairos services agree with the config schema', () => {
  const compose = yamlDocs(COMPOSE)[0] as { services: Record<string, Json & { image?: string; build?: { context: string; dockerfile: string }; environment?: Record<string, string>; ports?: string[]; volumes?: string[]; command?: string[]; healthcheck?: { test: string[] } }>; volumes?: Record<string, unknown> };
  const dir = dirname(COMPOSE);
  const services = compose.services;
  for (const s of ['kafka', 'schema-registry', 'redis', 'prometheus', 'grafana', 'kairos', 'dispatch']) assert.ok(services[s], `compose: service ${s}`);
  for (const [n, s] of Object.entries(services)) {
    assert.ok(s.image, `compose: ${n} names an image`);
    checkImage(s.image, `compose: ${n}`);
    for (const v of s.volumes ?? []) {
      const src = v.split(':')[0] as string;
      if (src.startsWith('.')) assert.ok(existsSync(resolve(dir, src)), `compose: ${n}: ${src} does not exist`);
      else assert.ok(compose.volumes && Object.hasOwn(compose.volumes, src), `compose: ${n}: named volume ${src} is not declared`);
    }
    const deps = s.depends_on ?? {};
    for (const d of Array.isArray(deps) ? (deps as string[]) : Object.keys(deps as Json)) assert.ok(services[d], `compose: ${n} depends on unknown ${d}`);
  }
  const kairos = services.kairos as NonNullable<(typeof services)[string]>;
  const build = kairos.build;
  assert.ok(build, 'compose: kairos is built from the repository');
  assert.equal(resolve(dir, build.context, build.dockerfile), DOCKERFILE, 'compose: kairos builds deploy/Dockerfile');
  assert.equal(resolve(dir, build.context), root, 'compose: build context is the repository root');
  assert.equal(services.dispatch?.image, kairos.image, 'compose: dispatch runs the kairos image');

  const hostPort = (url: string): [string, number] => {
    const m = /^(?:[a-z]+:\/\/)?([^:/]+):(\d+)/.exec(url);
    assert.ok(m, url);
    return [m[1] as string, Number(m[2])];
  };
  const check = (svc: string, command: string, vars: Set<string>, dfltPort: number): Record<string, string> => {
    const s = services[svc] as NonNullable<(typeof services)[string]>;
    assert.deepEqual(s.command, [command], `compose: ${svc} runs kairos ${command}`);
    const env = Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v)]));
    for (const k of Object.keys(env)) assert.ok(vars.has(k), `compose: ${svc}: ${k} is not read by kairos ${command}`);
    for (const b of (env.KAFKA_BROKERS ?? '').split(',')) assert.ok(services[hostPort(b)[0]], `compose: ${svc}: broker ${b} is not a service`);
    assert.ok(String((services.kafka?.environment as Record<string, string>).KAFKA_ADVERTISED_LISTENERS).includes(`//${env.KAFKA_BROKERS}`), `compose: kafka advertises ${env.KAFKA_BROKERS}`);
    if (env.SCHEMA_REGISTRY_URL) assert.equal(hostPort(env.SCHEMA_REGISTRY_URL).join(':'), 'schema-registry:8081', `compose: ${svc}: registry`);
    const port = Number(env.KAIROS_HTTP_PORT ?? dfltPort);
    assert.ok(s.ports?.some((p) => p.endsWith(`:${port}`)), `compose: ${svc} publishes ${port}`);
    assert.ok(s.healthcheck?.test.join(' ').includes(`127.0.0.1:${port}/health/`), `compose: ${svc} healthcheck on its port`);
    assert.equal(s.read_only, true, `compose: ${svc} read-only root filesystem`);
    return env;
  };
  const env = check('kairos', 'start', new Set(Object.values(RUNTIME_VARS).map((v) => v.env)), httpPortDefault);
  assert.doesNotThrow(() => loadRuntimeConfig(env), 'compose: kairos environment');
  assert.equal(env.KAIROS_SERDE, 'avro');
  assert.ok(kairos.volumes?.some((v) => v.split(':')[1] === env.KAIROS_STATE_DIR && !v.startsWith('.')), 'compose: a named volume at KAIROS_STATE_DIR');
  const campaigns = kairos.volumes?.find((v) => v.split(':')[1] === env.KAIROS_CAMPAIGNS);
  assert.ok(campaigns, 'compose: the campaign file is mounted at KAIROS_CAMPAIGNS');
  assert.doesNotThrow(() => resolveCampaigns(JSON.parse(readFileSync(resolve(dir, campaigns.split(':')[0] as string), 'utf8'))));
  const denv = check('dispatch', 'dispatch', new Set(Object.values(DISPATCH_VARS).map((v) => v.env)), dispatchPortDefault);
  assert.doesNotThrow(() => loadDispatchConfig(denv), 'compose: dispatch environment');
  assert.ok(services[hostPort(denv.REDIS_URL ?? '')[0]], 'compose: REDIS_URL is a service');

  // Kairos needs its inputs to exist (co-partitioned); kafka-init creates every contract topic.
  const init = (services['kafka-init']?.command as string[] | undefined)?.join('\n') ?? '';
  for (const t of [...Object.keys(TOPICS), 'crm.campaigns.v1']) assert.ok(init.includes(t), `compose: kafka-init does not create ${t}`);

  // Prometheus: the compose config scrapes the services under the jobs the alerts and the dashboard expect.
  const prom = yamlDocs(join(dir, 'prometheus.yml'))[0] as { rule_files: string[]; scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[] };
  const job = (n: string): string[] => prom.scrape_configs.find((s) => s.job_name === n)?.static_configs.flatMap((s) => s.targets) ?? [];
  assert.deepEqual(job('kairos'), [`kairos:${env.KAIROS_HTTP_PORT ?? httpPortDefault}`]);
  assert.deepEqual(job('kairos-dispatch'), [`dispatch:${denv.KAIROS_HTTP_PORT ?? dispatchPortDefault}`]);
  for (const s of prom.scrape_configs) assert.equal(s.metrics_path ?? '/metrics', '/metrics');
  const promMounts = services.prometheus?.volumes ?? [];
  for (const rf of prom.rule_files) assert.ok(promMounts.some((v) => v.split(':')[1] === `/etc/prometheus/${rf}`), `compose: rule file ${rf} is mounted next to prometheus.yml`);

  // Grafana: the default data source is this Prometheus; the dashboard file is in the provider's path.
  const ds = (yamlDocs(join(dir, 'grafana', 'provisioning', 'datasources', 'prometheus.yml'))[0] as { datasources: { url: string; isDefault?: boolean; type: string }[] }).datasources;
  assert.ok(ds.some((d) => d.type === 'prometheus' && d.isDefault === true && d.url === 'http://prometheus:9090'));
  const providers = (yamlDocs(join(dir, 'grafana', 'provisioning', 'dashboards', 'kairos.yml'))[0] as { providers: { options: { path: string } }[] }).providers;
  const dashMount = services.grafana?.volumes?.find((v) => v.startsWith('../grafana/kairos-dashboard.json:'));
  assert.ok(dashMount, 'compose: grafana mounts the dashboard');
  assert.equal(dirname(dashMount.split(':')[1] as string), providers[0]?.options.path, 'compose: the dashboard is in the provider path');
});

test('compose Prometheus config passes promtool check config (where promtool is installed)', (t) => {
  if (spawnSync('promtool', ['--version']).error) {
    t.skip('promtool not installed');
    return;
  }
  const { dir, remove } = tempDir('kairos-promcheck-');
  try {
    copyFileSync(join(DEPLOY, 'compose', 'prometheus.yml'), join(dir, 'prometheus.yml'));
    copyFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), join(dir, 'alerts.yml'));
    const r = spawnSync('promtool', ['check', 'config', join(dir, 'prometheus.yml')], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  } finally {
    remove();
  }
});

test('Dockerfile: multi-stage Debian, prebuilt rocksdb, non-root, read-only-friendly, port of the config', () => {
  const lines = readFileSync(DOCKERFILE, 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const froms = lines.filter((l) => /^FROM\s/i.test(l));
  assert.ok(froms.length >= 2, 'multi-stage (at least two FROM)');
  for (const f of froms) {
    const image = f.split(/\s+/)[1] as string;
    checkImage(image, 'Dockerfile FROM');
    assert.match(image, /^node:20[.\d]*-bookworm-slim/, `${image}: Debian glibc (the rocksdb prebuild), Node 20`);
  }
  const stageStart = lines.findLastIndex((l) => /^FROM\s/i.test(l));
  const buildStage = lines.slice(0, stageStart);
  const runtime = lines.slice(stageStart);
  const buildName = /\sAS\s+(\S+)/i.exec(froms[0] as string)?.[1];
  assert.ok(buildName, 'the build stage is named');
  assert.ok(buildStage.some((l) => /\bnpm ci\b/.test(l)), 'build stage: npm ci (builds dist/ through prepare)');
  assert.ok(buildStage.some((l) => /npm prune --omit=dev/.test(l)), 'build stage: npm prune --omit=dev');
  for (const what of ['node_modules', 'dist', 'bin', 'package.json']) {
    assert.ok(runtime.some((l) => new RegExp(`^COPY\\s+--from=${buildName}\\s+\\S*\\b${what.replace('.', '\\.')}\\b`).test(l)), `runtime stage copies ${what} from ${buildName}`);
  }
  assert.ok(!runtime.some((l) => /\bnpm (ci|install)\b/.test(l)), 'runtime stage installs nothing');
  const users = runtime.filter((l) => /^USER\s/i.test(l));
  const user = users.at(-1)?.split(/\s+/)[1];
  assert.ok(user && user !== 'root' && user !== '0', 'runtime stage runs as a non-root USER');
  const expose = runtime.filter((l) => /^EXPOSE\s/i.test(l)).flatMap((l) => l.split(/\s+/).slice(1).map((p) => Number(p.split('/')[0])));
  assert.deepEqual(expose, [httpPortDefault], 'EXPOSE = default KAIROS_HTTP_PORT of kairos start');
  assert.ok(runtime.some((l) => l === 'ENTRYPOINT ["node", "bin/kairos.js"]'), 'ENTRYPOINT node bin/kairos.js');
  assert.ok(runtime.some((l) => l === 'CMD ["start"]'), 'CMD start');
  // KAIROS_STATE_DIR of the image: an absolute directory the node user owns (compose named volumes copy it).
  const stateDir = /KAIROS_STATE_DIR=(\S+)/.exec(runtime.join('\n'))?.[1];
  assert.ok(stateDir?.startsWith('/'), 'image sets an absolute KAIROS_STATE_DIR');
  assert.ok(runtime.some((l) => l.includes(`chown node:node ${stateDir}`)), 'the state directory belongs to node');
  assert.ok(!/KAIROS_HTTP_PORT/.test(runtime.join('\n')), 'no KAIROS_HTTP_PORT in the image: dispatch (9465) shares it');

  // The build context: what the build stage copies is not excluded, host builds are.
  const ignored = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  for (const must of ['node_modules', 'dist', '.git']) assert.ok(ignored.includes(must), `.dockerignore excludes ${must}`);
  const copied = buildStage.filter((l) => /^COPY\s/i.test(l) && !l.includes('--from')).flatMap((l) => l.split(/\s+/).slice(1, -1));
  for (const src of copied) {
    assert.ok(existsSync(join(root, src)), `Dockerfile copies ${src}, which does not exist`);
    assert.ok(!ignored.includes(src), `Dockerfile copies ${src}, which .dockerignore excludes`);
  }
  // The prebuilt binary the image relies on (x64, glibc) ships with the installed rocksdb.
  assert.ok(existsSync(join(root, 'node_modules', 'rocksdb', 'prebuilds', 'linux-x64', 'node.napi.glibc.node')), 'rocksdb prebuild for linux-x64 glibc');
});
