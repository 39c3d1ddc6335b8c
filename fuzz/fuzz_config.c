/* fuzz_config.c: libFuzzer target for the YAML configuration loader with the framework's schema. */
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "config/model.h"

/* An app section with every setting type, so that the fuzzer reaches all value parsers. */
typedef struct fuzz_item {
    char *id;
    tp_str_list_t tags;
} fuzz_item_t;

typedef struct fuzz_app {
    bool flag;
    int64_t n;
    uint64_t wait, size;
    char *s;
    int mode;
    tp_cidr_set_t *nets;
    tp_addr_list_t addrs;
    char *origin;
    tp_str_list_t names;
    tp_list_t items;
} fuzz_app_t;

static const char *const fuzz_modes[] = {"a", "bb", NULL};

static const tp_setting_t fuzz_item_settings[] = {
    {.name = "id",
     .type = TP_SETTING_T_STRING,
     .offset = offsetof(fuzz_item_t, id),
     .flags = TP_SETTING_REQUIRED},
    TP_SETTING_STRINGS(fuzz_item_t, tags, "x, y", "tags"),
    TP_SETTING_END,
};

static const tp_schema_t fuzz_item_schema = {
    .name = "item", .size = sizeof(fuzz_item_t), .settings = fuzz_item_settings};

static const tp_setting_t fuzz_app_settings[] = {
    TP_SETTING_BOOL(fuzz_app_t, flag, "false", "flag"),
    TP_SETTING_INT_AUTO(fuzz_app_t, n, "auto", -5, 5, "n"),
    TP_SETTING_DURATION(fuzz_app_t, wait, "1s", 0, 0, "wait"),
    TP_SETTING_SIZE(fuzz_app_t, size, "1KiB", 1, TP_GIB(1), "size"),
    TP_SETTING_STRING(fuzz_app_t, s, NULL, "s"),
    TP_SETTING_ENUM(fuzz_app_t, mode, "bb", fuzz_modes, "mode"),
    TP_SETTING_CIDRS(fuzz_app_t, nets, "10.0.0.0/8", "nets"),
    TP_SETTING_ADDRS(fuzz_app_t, addrs, NULL, "addrs"),
    TP_SETTING_HOSTPORT(fuzz_app_t, origin, NULL, "origin"),
    TP_SETTING_STRINGS(fuzz_app_t, names, NULL, "names"),
    TP_SETTING_LIST(fuzz_app_t, items, &fuzz_item_schema, "items"),
    TP_SETTING_END,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tp_config_schemas_t schemas;
    tp_config_t cfg;
    tp_config_error_t err;
    char msg[1200];
    tp__config_schemas_init(&schemas, fuzz_app_settings, sizeof(fuzz_app_t), fuzz_app_settings,
                            sizeof(fuzz_app_t));
    if (tp__config_load(&schemas.root, &cfg, "fuzz.yaml", (const char *)data, size, &err) == 0)
        tp__config_free(&schemas.root, &cfg);
    else
        tp__config_error_format(&err, msg, sizeof(msg));
    return 0;
}
