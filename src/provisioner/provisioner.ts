// The image provisioner: a container's image (Docker or Appc, one path for both) as the layer
// trees its rootfs is made of, and those trees as its rootfs with the agent's backend. The
// agent's launch calls these two steps; pulling is the images layer's, mounting the runtime's.
import { join } from "node:path";
import type { Backend, DockerConfig } from "../config/flags.ts";
import { invalid, messageOf } from "../errors.ts";
import type { ImageConfig } from "../images/manifest.ts";
import type { ImageService } from "../images/service.ts";
import type { Image } from "../mesos/messages.ts";
import type { RootfsSpec } from "../runtime/spec.ts";
import { chooseBackend, provision } from "./backends.ts";
import type { LayerWhiteouts } from "./copy.ts";

/** An image as the provisioner uses it: its layer trees, base first, and what Docker adds. */
export interface ImageLayers {
  /** Layer trees on the host, base first. */
  trees: string[];
  /** Each tree's whiteouts and opaque directories (the copy backend applies them). */
  whiteouts: LayerWhiteouts[];
  /** Docker only: the image's config, its canonical reference and its layer ids (diff_ids). */
  docker?: { config: ImageConfig; reference: string; layerIds: string[] };
}

export interface ProvisionOptions {
  /** Mesos' `cached: false`: fetch the manifest again even if the image is in the store. */
  force: boolean;
  /** Takes the store's leases on the image and its layers (held until the container is removed). */
  keep: (release: () => void) => void;
  /** Registry credentials for this pull (a launch's Image.docker.config), over --docker_config's. */
  dockerConfig?: DockerConfig;
}

/** Copies layer trees onto one tree (in a worker: it is heavy I/O). */
export type CopyLayers = (trees: string[], dest: string, whiteouts: LayerWhiteouts[]) => Promise<void>;

export class Provisioner {
  /** overlay, aufs, copy or bind, as --image_provisioner_backend says or the machine allows. */
  readonly backend: Backend;

  constructor(
    private readonly images: ImageService,
    /** <work_dir>/provisioner */
    dir: string,
    flag: Backend | undefined,
    private readonly copy: CopyLayers,
  ) {
    this.backend = chooseBackend(flag, dir);
  }

  /** The layers of `image`, pulled (Docker) or fetched (Appc) into their stores. */
  async layers(image: Image, options: ProvisionOptions): Promise<ImageLayers> {
    if (image.appc) {
      // Appc: the rootfs only (Mesos uses no runtime config from an ACI).
      let trees: string[];
      try {
        trees = (await this.images.appc.get(image.appc.name, image.appc.labels?.labels ?? [], image.appc.id)).layers;
      } catch (err) {
        throw invalid(messageOf(err), err);
      }
      return { trees, whiteouts: trees.map(() => ({ whiteouts: [], opaques: [] })) };
    }
    const docker = image.docker!;
    const { store, puller } = this.images;
    const record = await puller.pull(docker.name, {
      force: options.force,
      keep: options.keep,
      ...(options.dockerConfig ? { dockerConfig: options.dockerConfig } : {}),
    });
    return {
      trees: record.layers.map((l) => store.layerRootfs(l)),
      whiteouts: record.layers.map((l) => {
        const r = store.layer(l)!;
        return { whiteouts: r.whiteouts, opaques: r.opaques };
      }),
      docker: { config: store.config(record.configDigest), reference: record.reference, layerIds: [...record.layers] },
    };
  }

  /**
   * A rootfs of `layers` in `containerDir` (the container's provisioner dir), for this backend;
   * `made`: the id of the skeleton a spare put there (provisioner/spares.ts), if one did.
   */
  async rootfs(layers: ImageLayers, containerDir: string, made?: string): Promise<RootfsSpec> {
    const dir = join(containerDir, "backends", this.backend);
    const provisioned = await provision(this.backend, layers.trees, dir, (trees, dest) => this.copy(trees, dest, layers.whiteouts), made);
    return provisioned.rootfs;
  }
}
