/**
 * The README's commands run in the project's root, as a user types them, and write files there
 * (`batch/`, `fleet/`, `relayer.json`, Ignition's `ignition/deployments/chain-31337`, …). This keeps
 * the developer's own files safe while they do: each path the README writes is a plain name at the
 * root that git does not track and no tool of the project owns (checked before anything moves); one
 * that exists is renamed aside first and put back at the end; what the run wrote under those names
 * is removed. Nothing else is ever removed: a new top-level entry no step declared is only reported.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, renameSync, rmSync, rmdirSync } from "node:fs";
import path from "node:path";

/** Top-level names of the project that no README command may write and this test never removes. */
const PROJECT = new Set([
  ".ci",
  ".git",
  ".github",
  "artifacts",
  "bench",
  "bin",
  "cache",
  "contracts",
  "coverage",
  "docs",
  "ignition",
  "node_modules",
  "scripts",
  "src",
  "tasks",
  "test",
  "typechain-types",
]);

export class RootFiles {
  private readonly aside: [string, string][] = [];
  private initial: Set<string> | undefined;
  private createdDeployments = false;

  /**
   * `names`: the top-level names the README writes; `deployment`: Ignition's deployment directory
   * it writes (relative to `root`, under ignition/deployments).
   */
  constructor(
    private readonly root: string,
    private readonly names: string[],
    private readonly deployment: string,
  ) {
    const listed = spawnSync("git", ["ls-files"], { cwd: root, encoding: "utf8" });
    const tracked = new Set((listed.stdout ?? "").split("\n").map((f) => f.split("/")[0]));
    for (const name of names) {
      if (!/^[A-Za-z0-9._-]+$/.test(name) || name === "." || name === ".." || PROJECT.has(name) || tracked.has(name))
        throw new Error(`test/readme: "${name}" is part of the project, not a file the README's commands may write`);
    }
    if (!/^ignition\/deployments\/[A-Za-z0-9._-]+$/.test(deployment))
      throw new Error(`test/readme: ${deployment} is not an Ignition deployment directory`);
  }

  /** Puts the developer's files aside and notes what the root holds. */
  enter(): void {
    const deployments = path.join(this.root, path.dirname(this.deployment));
    this.createdDeployments = !existsSync(deployments);
    for (const name of [...this.names, this.deployment]) {
      const full = path.join(this.root, name);
      if (!existsSync(full)) continue;
      const to = `${full}.readme-aside-${process.pid}`;
      renameSync(full, to);
      this.aside.push([full, to]);
    }
    this.initial = new Set(readdirSync(this.root));
  }

  /**
   * Removes what the run wrote under the declared names, puts the developer's files back, and
   * returns the new top-level entries no step declared (left in place). Does nothing before `enter`.
   */
  leave(): string[] {
    if (this.initial === undefined) return [];
    const initial = this.initial;
    this.initial = undefined;
    const stray = readdirSync(this.root).filter((e) => !initial.has(e) && !this.names.includes(e));
    for (const name of [...this.names, this.deployment])
      rmSync(path.join(this.root, name), { recursive: true, force: true });
    const deployments = path.join(this.root, path.dirname(this.deployment));
    if (this.createdDeployments && existsSync(deployments) && readdirSync(deployments).length === 0)
      rmdirSync(deployments);
    for (const [full, to] of this.aside.splice(0)) renameSync(to, full);
    return stray;
  }
}
