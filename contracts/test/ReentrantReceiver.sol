// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PaymentChannels} from "../payments/PaymentChannels.sol";

/**
 * @dev An owner contract that tries to re-enter PaymentChannels when it receives ETH from a
 * withdrawal: a second withdrawal, or a new channel. Records whether the re-entry was refused.
 */
contract ReentrantReceiver {
    PaymentChannels private immutable _channels;
    uint256 private _device;
    /// @dev Which withdrawal the fallback repeats: a device's earnings, or this account's refunds.
    bool private _refunds;
    bool public reentered;
    bool public refused;
    bytes public reason;

    constructor(PaymentChannels channels) {
        _channels = channels;
    }

    /// @dev Withdraws the ETH credited to `device`, which this contract owns.
    function withdraw(uint256 device) external {
        (_device, _refunds) = (device, false);
        _channels.withdrawForDevice(device, address(0), payable(address(this)));
    }

    /// @dev Withdraws this account's ETH refunds.
    function withdrawRefunds() external {
        _refunds = true;
        _channels.withdraw(address(0), payable(address(this)));
    }

    // The attack is the point: the fallback tries to withdraw again.
    // solhint-disable-next-line no-complex-fallback
    receive() external payable {
        if (reentered) return;
        reentered = true;
        try this.withdrawAgain() {
            refused = false;
        } catch (bytes memory why) {
            refused = true;
            reason = why;
        }
    }

    /// @dev The second withdrawal, from inside the first.
    function withdrawAgain() external {
        if (_refunds) _channels.withdraw(address(0), payable(address(this)));
        else _channels.withdrawForDevice(_device, address(0), payable(address(this)));
    }
}
