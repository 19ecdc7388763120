"""A QEMU-emulated Linux PLC: a Debian kernel and a busybox initramfs with OpenSSH, a libmodbus Modbus
TCP/RTU runtime, a console login and CAN, booted under TCG. `build` makes the image, `launcher` runs it."""
