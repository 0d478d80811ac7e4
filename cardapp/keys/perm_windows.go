//go:build windows

package keys

import (
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// broadSIDs are groups that stand for "other users" on Windows.
var broadSIDs = []struct {
	t    windows.WELL_KNOWN_SID_TYPE
	name string
}{
	{windows.WinWorldSid, "Everyone"},
	{windows.WinAuthenticatedUserSid, "Authenticated Users"},
	{windows.WinBuiltinUsersSid, "Users"},
	{windows.WinBuiltinGuestsSid, "Guests"},
	{windows.WinAnonymousSid, "Anonymous"},
	{windows.WinInteractiveSid, "Interactive"},
	{windows.WinNetworkSid, "Network"},
}

// checkKeyFileAccess is the Windows counterpart of the Unix mode check (Go
// reports Windows files as 0666 or 0444, so mode bits say nothing): it
// refuses a file whose DACL is absent or NULL, or that has an effective
// allow entry for a group standing for other users.
func checkKeyFileAccess(path string, f *os.File, _ os.FileInfo) error {
	sd, err := windows.GetSecurityInfo(windows.Handle(f.Fd()), windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("keys: key file %s: reading its access control list: %w", path, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		return fmt.Errorf("keys: refusing key file %s: it has no access control list (everyone has full access); restrict it to the station account", path)
	}
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return fmt.Errorf("keys: key file %s: reading its access control list: %w", path, err)
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE || ace.Header.AceFlags&windows.INHERIT_ONLY_ACE != 0 || ace.Mask == 0 {
			continue
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		who := ""
		for _, b := range broadSIDs {
			if sid.IsWellKnown(b.t) {
				who = b.name
				break
			}
		}
		if s := sid.String(); who == "" && strings.HasPrefix(s, "S-1-5-21-") && strings.HasSuffix(s, "-513") {
			who = "Domain Users"
		}
		if who != "" {
			return fmt.Errorf("keys: refusing key file %s: its ACL grants %s (%s) access mask %#x; restrict it to the station account", path, who, sid.String(), uint32(ace.Mask))
		}
	}
	return nil
}
