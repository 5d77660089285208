/* gpumon.c -- the few NVML calls the dashboard needs, resolved at run time. */
#include "engine/gpumon.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NVML's own types, as its header declares them (nvml.h is not needed to build). */
typedef int nvml_return;       /* nvmlReturn_t: 0 is NVML_SUCCESS */
typedef void *nvml_device;     /* nvmlDevice_t */
typedef struct { unsigned gpu, memory; } nvml_utilization;
typedef struct { unsigned long long total, free, used; } nvml_memory;
enum { NVML_TEMPERATURE_GPU = 0 };

struct dp_gpumon {
    void *lib;
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*by_index)(unsigned, nvml_device *);
    nvml_return (*by_bus)(const char *, nvml_device *);
    nvml_return (*name)(nvml_device, char *, unsigned);
    nvml_return (*utilization)(nvml_device, nvml_utilization *);
    nvml_return (*memory)(nvml_device, nvml_memory *);
    nvml_return (*temperature)(nvml_device, int, unsigned *);
    nvml_return (*power)(nvml_device, unsigned *); /* milliwatts */
};

dp_gpumon *dp_gpumon_open(char *why, unsigned long why_size)
{
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, why_size, "no NVML (%s)", dlerror());
        return NULL;
    }
    dp_gpumon *m = calloc(1, sizeof *m);
    if (!m) {
        dlclose(lib);
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    m->lib = lib;
    /* dlsym gives a void *; converting it to a function pointer is what POSIX promises works */
#define SYM(field, name) *(void **)&m->field = dlsym(lib, name)
    SYM(init, "nvmlInit_v2");
    SYM(shutdown, "nvmlShutdown");
    SYM(by_index, "nvmlDeviceGetHandleByIndex_v2");
    SYM(by_bus, "nvmlDeviceGetHandleByPciBusId_v2");
    SYM(name, "nvmlDeviceGetName");
    SYM(utilization, "nvmlDeviceGetUtilizationRates");
    SYM(memory, "nvmlDeviceGetMemoryInfo");
    SYM(temperature, "nvmlDeviceGetTemperature");
    SYM(power, "nvmlDeviceGetPowerUsage");
#undef SYM
    if (!m->init || !m->shutdown || !m->by_index || m->init() != 0) {
        snprintf(why, why_size, "NVML did not initialise");
        dlclose(lib);
        free(m);
        return NULL;
    }
    return m;
}

void dp_gpumon_close(dp_gpumon *m)
{
    if (!m)
        return;
    m->shutdown();
    dlclose(m->lib);
    free(m);
}

int dp_gpumon_read(dp_gpumon *m, const char *bus_id, unsigned index, dp_gpu_reading *r,
                   char *name, unsigned long name_size)
{
    memset(r, 0, sizeof *r);
    nvml_device dev = NULL;
    nvml_return found = bus_id && m->by_bus ? m->by_bus(bus_id, &dev) : m->by_index(index, &dev);
    if (found != 0)
        return -1;
    nvml_utilization u;
    if (m->utilization && m->utilization(dev, &u) == 0) {
        r->util_valid = true;
        r->util_pct = u.gpu;
    }
    nvml_memory mem;
    if (m->memory && m->memory(dev, &mem) == 0) {
        r->mem_valid = true;
        r->mem_used = mem.used;
        r->mem_total = mem.total;
    }
    if (m->temperature && m->temperature(dev, NVML_TEMPERATURE_GPU, &r->temp_c) == 0)
        r->temp_valid = true;
    unsigned mw;
    if (m->power && m->power(dev, &mw) == 0) {
        r->power_valid = true;
        r->power_w = mw / 1000.0;
    }
    if (name && name_size && (!m->name || m->name(dev, name, (unsigned)name_size) != 0))
        snprintf(name, name_size, "GPU %u", index);
    return 0;
}
