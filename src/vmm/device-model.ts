/**
 * Device models that raise MSIs, as a VMM's emulated PCI devices do: an MSI-X vector write
 * to the ITS doorbell (ITS base + 0x10040) with the device's DeviceID and data = EventID,
 * injected with KVM_SIGNAL_MSI (VitsdTarget.signalMsi).
 *
 * All MSIs go through an MsiRouter, which is what lets a migration happen under traffic:
 * while the router is held (the VMM is migrating) an MSI refused with -EBUSY (the VM is
 * suspended) is kept in order, and replayed once, on the destination, after RESUME. So
 * an MSI is neither lost nor duplicated by the suspend window.
 */
import { Errno, isErrnoError } from '../util/errno.js';
import type { VitsdTarget } from './types.js';

export interface MsiMessage {
  doorbell: number;
  devid: number;
  eventid: number;
}

export interface MsiRouterStats {
  sent: number;
  delivered: number;
  /** Status 0: the guest's mapping does not allow it (unmapped, LPI out of range). */
  dropped: number;
  /** -EBUSY outside a migration (ITS disabled, EnableLPIs = 0): KVM drops these too. */
  busy: number;
  /** Kept during a migration and replayed after RESUME. */
  deferred: number;
  replayed: number;
  /** Other errors (negative errno). */
  errors: number;
}

export type MsiOutcome = 'delivered' | 'dropped' | 'busy' | 'deferred' | 'error';

export class MsiRouter {
  private _target: VitsdTarget;
  private held = false;
  private backlog: MsiMessage[] = [];
  private draining = false;
  readonly stats: MsiRouterStats = { sent: 0, delivered: 0, dropped: 0, busy: 0, deferred: 0, replayed: 0, errors: 0 };
  /** Optional observer of every final outcome (tests count deliveries per message). */
  onOutcome: ((msg: MsiMessage, outcome: MsiOutcome) => void) | null = null;

  constructor(target: VitsdTarget) {
    this._target = target;
  }

  get target(): VitsdTarget {
    return this._target;
  }
  get isHeld(): boolean {
    return this.held;
  }
  get backlogLength(): number {
    return this.backlog.length;
  }

  async send(msg: MsiMessage): Promise<MsiOutcome> {
    this.stats.sent++;
    if (this.draining) {
      // Keep order behind the MSIs being replayed.
      this.defer(msg);
      return 'deferred';
    }
    return this.deliver(msg, true);
  }

  private defer(msg: MsiMessage): void {
    this.backlog.push(msg);
    this.stats.deferred++;
    this.onOutcome?.(msg, 'deferred');
  }

  private async deliver(msg: MsiMessage, mayDefer: boolean): Promise<MsiOutcome> {
    let outcome: MsiOutcome;
    const sentTo = this._target;
    try {
      const r = await sentTo.signalMsi(msg.doorbell, msg.devid, msg.eventid);
      outcome = r === 1 ? 'delivered' : 'dropped';
    } catch (e) {
      if (isErrnoError(e) && e.errno === Errno.EBUSY) {
        if (mayDefer && (this.held || this.draining)) {
          this.defer(msg);
          return 'deferred';
        }
        if (mayDefer && sentTo !== this._target) {
          // Refused by the old host after the switch was complete: retry once on the new one.
          this.stats.replayed++;
          return this.deliver(msg, false);
        }
        outcome = 'busy';
      } else {
        outcome = 'error';
      }
    }
    if (outcome === 'delivered') this.stats.delivered++;
    else if (outcome === 'dropped') this.stats.dropped++;
    else if (outcome === 'busy') this.stats.busy++;
    else this.stats.errors++;
    this.onOutcome?.(msg, outcome);
    return outcome;
  }

  /** Migration starts: -EBUSY from now on means "retry after RESUME". */
  hold(): void {
    this.held = true;
  }

  /**
   * Migration ends: points the router at `target` (the destination, already resumed) and
   * replays the backlog in order, once each. An MSI still refused is counted as KVM would.
   */
  async release(target?: VitsdTarget): Promise<void> {
    if (target) this._target = target;
    this.draining = true;
    try {
      while (this.backlog.length > 0) {
        const msg = this.backlog.shift()!;
        this.stats.replayed++;
        await this.deliver(msg, false);
      }
    } finally {
      this.draining = false;
      this.held = false;
    }
  }
}

/** A PCI function with MSI-X: DeviceID = requester ID, one EventID per vector. */
export class MsiDevice {
  /** MSIs raised per vector. */
  readonly raised: number[];

  constructor(
    readonly name: string,
    readonly router: MsiRouter,
    /** ITS doorbell: ITS base + GITS_TRANSLATER. */
    readonly doorbell: number,
    readonly devid: number,
    readonly nvec: number,
  ) {
    this.raised = new Array<number>(nvec).fill(0);
  }

  /** Raises vector `vector` (an MSI-X table entry with data = EventID = vector). */
  raise(vector: number): Promise<MsiOutcome> {
    this.raised[vector] = (this.raised[vector] ?? 0) + 1;
    return this.router.send({ doorbell: this.doorbell, devid: this.devid, eventid: vector });
  }
}

/** PCI requester ID: bus << 8 | device << 3 | function (the DeviceID under an identity msi-map). */
export function pciRequesterId(bus: number, device: number, fn: number): number {
  return ((bus & 0xff) << 8) | ((device & 0x1f) << 3) | (fn & 7);
}
