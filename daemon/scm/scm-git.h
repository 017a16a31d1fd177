/* scm-git.h: libgit2 loaded on first use. runnerd does not link libgit2 (nor mbedtls, pcre2 and
 * the rest it brings): scm_git_load() dlopen()s it by its soname the first time a job needs
 * git, and resolves every git_* function the scm*.c files call into one table. After this
 * header, a call such as git_repository_open(...) goes through that table; git2.h still gives
 * the types, constants and inline helpers. Every entry point of scm/ calls scm_git_load() before
 * its first git_* call. Folder-private. */
#ifndef SCM_GIT_H
#define SCM_GIT_H

#include "runner/err.h"

#include <git2.h>

/* Every libgit2 function scm/ calls. A new call into libgit2 is added here and in the
 * #define list below; a function missing from both fails the link (libgit2 is not linked). */
#define SCM_GIT_FNS(X) \
    X(git_blob_free) \
    X(git_blob_lookup) \
    X(git_blob_rawcontent) \
    X(git_blob_rawsize) \
    X(git_branch_create) \
    X(git_buf_dispose) \
    X(git_checkout_head) \
    X(git_checkout_options_init) \
    X(git_commit_free) \
    X(git_commit_lookup) \
    X(git_commit_tree) \
    X(git_config_free) \
    X(git_config_get_bool) \
    X(git_config_get_string_buf) \
    X(git_config_iterator_free) \
    X(git_config_iterator_new) \
    X(git_config_next) \
    X(git_config_open_ondisk) \
    X(git_config_set_bool) \
    X(git_config_set_string) \
    X(git_credential_userpass_plaintext_new) \
    X(git_error_clear) \
    X(git_error_last) \
    X(git_error_set_str) \
    X(git_fetch_options_init) \
    X(git_ignore_path_is_ignored) \
    X(git_libgit2_init) \
    X(git_libgit2_opts) \
    X(git_libgit2_shutdown) \
    X(git_object_free) \
    X(git_object_id) \
    X(git_object_lookup_prefix) \
    X(git_odb_exists) \
    X(git_odb_free) \
    X(git_oid_cpy) \
    X(git_oid_fromstr) \
    X(git_oid_fromstrn) \
    X(git_oid_tostr) \
    X(git_proxy_options_init) \
    X(git_reference_free) \
    X(git_reference_is_branch) \
    X(git_reference_iterator_free) \
    X(git_reference_iterator_new) \
    X(git_reference_lookup) \
    X(git_reference_name) \
    X(git_reference_name_is_valid) \
    X(git_reference_next) \
    X(git_reference_peel) \
    X(git_reference_symbolic_create) \
    X(git_reference_symbolic_target) \
    X(git_reference_target) \
    X(git_remote_connect) \
    X(git_remote_create_detached) \
    X(git_remote_create_options_init) \
    X(git_remote_create_with_opts) \
    X(git_remote_default_branch) \
    X(git_remote_disconnect) \
    X(git_remote_fetch) \
    X(git_remote_free) \
    X(git_remote_init_callbacks) \
    X(git_remote_lookup) \
    X(git_remote_ls) \
    X(git_remote_stats) \
    X(git_remote_url) \
    X(git_repository_config) \
    X(git_repository_free) \
    X(git_repository_head) \
    X(git_repository_init) \
    X(git_repository_init_ext) \
    X(git_repository_init_options_init) \
    X(git_repository_odb) \
    X(git_repository_open) \
    X(git_repository_open_bare) \
    X(git_repository_open_ext) \
    X(git_repository_path) \
    X(git_repository_set_head) \
    X(git_repository_set_head_detached) \
    X(git_tree_entry_byindex) \
    X(git_tree_entry_bypath) \
    X(git_tree_entry_filemode) \
    X(git_tree_entry_free) \
    X(git_tree_entry_id) \
    X(git_tree_entry_name) \
    X(git_tree_entrycount) \
    X(git_tree_free) \
    X(git_tree_lookup) \
    X(git_tree_walk)

/* The resolved functions; filled once by scm_git_load(), read-only afterwards. */
struct scm_git_fns {
#define SCM_GIT_FIELD(name) __typeof__(name) *name;
    SCM_GIT_FNS(SCM_GIT_FIELD)
#undef SCM_GIT_FIELD
};
extern struct scm_git_fns scm_git;

/* Loads libgit2 and resolves the table, once per process (thread-safe; later calls return
 * the first one's result). Returns 0, or -ELIBACC naming the library and what dlopen()
 * or dlsym() said. */
int scm_git_load(struct err *e);

/* Tests: the file scm_git_load() opens instead of the build's soname (e.g. a missing one).
 * Only before the first scm_git_load(); name is borrowed and must outlive the load. */
void scm_git_use(const char *name);

#ifndef SCM_GIT_IMPL
#define git_blob_free (scm_git.git_blob_free)
#define git_blob_lookup (scm_git.git_blob_lookup)
#define git_blob_rawcontent (scm_git.git_blob_rawcontent)
#define git_blob_rawsize (scm_git.git_blob_rawsize)
#define git_branch_create (scm_git.git_branch_create)
#define git_buf_dispose (scm_git.git_buf_dispose)
#define git_checkout_head (scm_git.git_checkout_head)
#define git_checkout_options_init (scm_git.git_checkout_options_init)
#define git_commit_free (scm_git.git_commit_free)
#define git_commit_lookup (scm_git.git_commit_lookup)
#define git_commit_tree (scm_git.git_commit_tree)
#define git_config_free (scm_git.git_config_free)
#define git_config_get_bool (scm_git.git_config_get_bool)
#define git_config_get_string_buf (scm_git.git_config_get_string_buf)
#define git_config_iterator_free (scm_git.git_config_iterator_free)
#define git_config_iterator_new (scm_git.git_config_iterator_new)
#define git_config_next (scm_git.git_config_next)
#define git_config_open_ondisk (scm_git.git_config_open_ondisk)
#define git_config_set_bool (scm_git.git_config_set_bool)
#define git_config_set_string (scm_git.git_config_set_string)
#define git_credential_userpass_plaintext_new (scm_git.git_credential_userpass_plaintext_new)
#define git_error_clear (scm_git.git_error_clear)
#define git_error_last (scm_git.git_error_last)
#define git_error_set_str (scm_git.git_error_set_str)
#define git_fetch_options_init (scm_git.git_fetch_options_init)
#define git_ignore_path_is_ignored (scm_git.git_ignore_path_is_ignored)
#define git_libgit2_init (scm_git.git_libgit2_init)
#define git_libgit2_opts (scm_git.git_libgit2_opts)
#define git_libgit2_shutdown (scm_git.git_libgit2_shutdown)
#define git_object_free (scm_git.git_object_free)
#define git_object_id (scm_git.git_object_id)
#define git_object_lookup_prefix (scm_git.git_object_lookup_prefix)
#define git_odb_exists (scm_git.git_odb_exists)
#define git_odb_free (scm_git.git_odb_free)
#define git_oid_cpy (scm_git.git_oid_cpy)
#define git_oid_fromstr (scm_git.git_oid_fromstr)
#define git_oid_fromstrn (scm_git.git_oid_fromstrn)
#define git_oid_tostr (scm_git.git_oid_tostr)
#define git_proxy_options_init (scm_git.git_proxy_options_init)
#define git_reference_free (scm_git.git_reference_free)
#define git_reference_is_branch (scm_git.git_reference_is_branch)
#define git_reference_iterator_free (scm_git.git_reference_iterator_free)
#define git_reference_iterator_new (scm_git.git_reference_iterator_new)
#define git_reference_lookup (scm_git.git_reference_lookup)
#define git_reference_name (scm_git.git_reference_name)
#define git_reference_name_is_valid (scm_git.git_reference_name_is_valid)
#define git_reference_next (scm_git.git_reference_next)
#define git_reference_peel (scm_git.git_reference_peel)
#define git_reference_symbolic_create (scm_git.git_reference_symbolic_create)
#define git_reference_symbolic_target (scm_git.git_reference_symbolic_target)
#define git_reference_target (scm_git.git_reference_target)
#define git_remote_connect (scm_git.git_remote_connect)
#define git_remote_create_detached (scm_git.git_remote_create_detached)
#define git_remote_create_options_init (scm_git.git_remote_create_options_init)
#define git_remote_create_with_opts (scm_git.git_remote_create_with_opts)
#define git_remote_default_branch (scm_git.git_remote_default_branch)
#define git_remote_disconnect (scm_git.git_remote_disconnect)
#define git_remote_fetch (scm_git.git_remote_fetch)
#define git_remote_free (scm_git.git_remote_free)
#define git_remote_init_callbacks (scm_git.git_remote_init_callbacks)
#define git_remote_lookup (scm_git.git_remote_lookup)
#define git_remote_ls (scm_git.git_remote_ls)
#define git_remote_stats (scm_git.git_remote_stats)
#define git_remote_url (scm_git.git_remote_url)
#define git_repository_config (scm_git.git_repository_config)
#define git_repository_free (scm_git.git_repository_free)
#define git_repository_head (scm_git.git_repository_head)
#define git_repository_init (scm_git.git_repository_init)
#define git_repository_init_ext (scm_git.git_repository_init_ext)
#define git_repository_init_options_init (scm_git.git_repository_init_options_init)
#define git_repository_odb (scm_git.git_repository_odb)
#define git_repository_open (scm_git.git_repository_open)
#define git_repository_open_bare (scm_git.git_repository_open_bare)
#define git_repository_open_ext (scm_git.git_repository_open_ext)
#define git_repository_path (scm_git.git_repository_path)
#define git_repository_set_head (scm_git.git_repository_set_head)
#define git_repository_set_head_detached (scm_git.git_repository_set_head_detached)
#define git_tree_entry_byindex (scm_git.git_tree_entry_byindex)
#define git_tree_entry_bypath (scm_git.git_tree_entry_bypath)
#define git_tree_entry_filemode (scm_git.git_tree_entry_filemode)
#define git_tree_entry_free (scm_git.git_tree_entry_free)
#define git_tree_entry_id (scm_git.git_tree_entry_id)
#define git_tree_entry_name (scm_git.git_tree_entry_name)
#define git_tree_entrycount (scm_git.git_tree_entrycount)
#define git_tree_free (scm_git.git_tree_free)
#define git_tree_lookup (scm_git.git_tree_lookup)
#define git_tree_walk (scm_git.git_tree_walk)
#endif

#endif
