/*
 * startup.c - minimal Cortex-M startup for the example: vector table, .data copy, .bss clear, FPU on
 * (hard-float builds), newlib semihosting, exit(main()). Symbols come from the linker scripts.
 */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Default_Handler(void);
void _init(void);
void _fini(void);

/* newlib's exit() runs these; nothing to construct or destroy here. */
void _init(void) {}
void _fini(void) {}

void Default_Handler(void) {
    for (;;) {
    }
}

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
#if defined(__ARM_FP)
    /* CPACR: full access to coprocessors 10 and 11 (the FPU) before any float instruction. */
    *(volatile uint32_t *)0xE000ED88u |= UINT32_C(0xF) << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    initialise_monitor_handles();
    exit(main());
}

/* Initial stack pointer, reset, then NMI ... SysTick (15 entries in all); everything else spins. */
__attribute__((section(".isr_vector"), used)) static const uintptr_t vectors[16] = {
    (uintptr_t)&_estack,        (uintptr_t)Reset_Handler,   (uintptr_t)Default_Handler,
    (uintptr_t)Default_Handler, (uintptr_t)Default_Handler, (uintptr_t)Default_Handler,
    (uintptr_t)Default_Handler, 0u, 0u, 0u, 0u,
    (uintptr_t)Default_Handler, (uintptr_t)Default_Handler, 0u,
    (uintptr_t)Default_Handler, (uintptr_t)Default_Handler,
};
