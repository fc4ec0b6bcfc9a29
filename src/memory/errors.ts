import { Errno, ErrnoError } from '../util/errno.js';

/** An access to a guest physical address outside every region (or across a region's end). */
export class GuestMemoryFault extends ErrnoError {
  readonly address: number;
  readonly length: number;
  constructor(address: number, length: number, what = 'access') {
    super(Errno.EFAULT, `guest ${what} of ${length} byte(s) at 0x${address.toString(16)} is outside guest memory`);
    this.name = 'GuestMemoryFault';
    this.address = address;
    this.length = length;
  }
}

/** A write while the memory is frozen (the VM is suspended for migration). */
export class GuestMemoryFrozen extends ErrnoError {
  readonly address: number;
  constructor(address: number, length: number) {
    super(Errno.EBUSY, `guest memory is frozen: refused write of ${length} byte(s) at 0x${address.toString(16)}`);
    this.name = 'GuestMemoryFrozen';
    this.address = address;
  }
}
